/**
 * Records queued for a record log's next commit (servers/persist.ts), kept without the view a
 * store hands out for each: a record is its AT fields (a stored record's shared body, which the
 * store keeps alive anyway) and its seq, in two arrays. A view per queued record lived until its
 * commit, 10 ms or more: long enough for the young generation's scavenges to find it alive and
 * copy it (a catch-up queues 1,000,000 of them; BENCHMARKS.md, "Catch-up of 2026-11-28 (branch
 * `catchup16`)").
 *
 * @module
 */

import type { AtFields } from "./record.ts";
import { recordFields, type StoredRecord } from "./store.ts";

/**
 * Records in the order they were queued.
 *
 * @example
 * ```ts
 * import { RecordStore } from "./store.ts";
 *
 * const store = new RecordStore();
 * const q = new RecordQueue();
 * q.push(store.offer({ origin: "Hill", diff: "+0.1", client: "k", location: "+1+2", time: "5" }, -1).record!);
 * q.push(store.offer({ origin: "Hill", diff: "+0.1", client: "k", location: "+1+2", time: "6" }, -1).record!);
 * const taken = q.take((f, seq) => store.supersededAt(f, seq));
 * [q.length, taken.length, taken.seqs[0], taken.fields[0].time]; // [0, 1, 2, "6"]
 * ```
 */
export class RecordQueue {
  /** Each record's AT fields. */
  fields: AtFields[] = [];
  /** Each record's seq (the same index as its fields). */
  seqs: number[] = [];

  get length(): number {
    return this.seqs.length;
  }

  /** Queues `record`: its fields (its shared body when a store handed it out) and its seq. */
  push(record: StoredRecord): void {
    this.fields.push(recordFields(record));
    this.seqs.push(record.seq);
  }

  /**
   * Everything queued, but records that `skip` says need not be written (superseded since),
   * as a queue of its own; this one is empty afterwards.
   */
  take(skip?: (fields: AtFields, seq: number) => boolean): RecordQueue {
    const taken = new RecordQueue();
    if (skip === undefined) {
      taken.fields = this.fields;
      taken.seqs = this.seqs;
    } else {
      const { fields, seqs } = this;
      for (let i = 0; i < seqs.length; i++) {
        if (skip(fields[i], seqs[i])) continue;
        taken.fields.push(fields[i]);
        taken.seqs.push(seqs[i]);
      }
    }
    this.fields = [];
    this.seqs = [];
    return taken;
  }

  /** Puts `taken` (from {@linkcode take}) back before what was queued since. */
  requeue(taken: RecordQueue): void {
    this.fields = taken.fields.concat(this.fields);
    this.seqs = taken.seqs.concat(this.seqs);
  }
}
