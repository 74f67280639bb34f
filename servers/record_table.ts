/**
 * The process's table of shared record bodies: the five servers of `start` each store every
 * record, and without this each holds its own parsed copy of the same bytes (five objects, five
 * sets of strings, each string a slice that pins the whole line it was cut from). A store asks the
 * table for a body when it keeps a record; a record byte for byte the one the table holds for that
 * client gets that very body, so the servers of one process share one copy.
 *
 * Sharing is object identity of byte-identical records only: a store is handed the body of the
 * exact record it was offered, never another one, so every server's view stays its own.
 *
 * Bodies are counted: each store that keeps one holds it once and releases it when it replaces or
 * drops the record. The table lists a client's body only while some store holds it, so replaced
 * and dropped records are not pinned here. A body that is older than the one listed for its
 * client (a server catching up from behind) is handed out unlisted: not shared, never wrong.
 *
 * @module
 */

import { type AtFields, compareRecords, sameRecord } from "./record.ts";

/** One record's text fields, shared by every store of this process that holds that record. */
export class SharedRecord implements AtFields {
  /** How many stores hold it now. */
  holders = 1;
  constructor(
    readonly origin: string,
    readonly diff: string,
    readonly client: string,
    readonly location: string,
    readonly time: string,
  ) {}
}

/**
 * Distinct origins kept as one string each (server names: a handful in any herd). Bounded, since
 * the names come from peers' bytes.
 */
const MAX_ORIGINS = 64;

/** Below this length V8's substrings are copies already; at or above it, slices of the line. */
const SLICE_MIN = 13;

/**
 * A copy of `s` that does not keep alive the line it was cut from. JSON's round trip makes a new
 * flat string (one byte per char, exactly the same chars).
 */
function own(s: string): string {
  return s.length < SLICE_MIN ? s : JSON.parse(JSON.stringify(s));
}

/**
 * Client → the newest body any store of this process holds for it.
 *
 * @example
 * ```ts
 * const table = new RecordTable();
 * const r = { origin: "Hill", diff: "+0.1", client: "k", location: "+1+2", time: "5" };
 * const a = table.hold(r);
 * table.hold({ ...r }) === a; // true: byte-identical, shared
 * table.release(a);
 * table.release(a);
 * table.size; // 0: nobody holds it
 * ```
 */
export class RecordTable {
  #byClient = new Map<string, SharedRecord>();
  #origins = new Map<string, string>();

  /** Clients with a listed body. */
  get size(): number {
    return this.#byClient.size;
  }

  /** The listed body of a client (for tests and diagnostics). */
  listed(client: string): SharedRecord | undefined {
    return this.#byClient.get(client);
  }

  /**
   * The body for `fields`, held once more by the caller: the listed one when it is byte for byte
   * this record, else a new one (listed when it is newer than the listed one, or none is).
   */
  hold(fields: AtFields): SharedRecord {
    const listed = this.#byClient.get(fields.client);
    if (listed !== undefined && sameRecord(listed, fields)) {
      listed.holders++;
      return listed;
    }
    const body = new SharedRecord(
      this.#origin(fields.origin),
      own(fields.diff),
      listed?.client ?? own(fields.client),
      own(fields.location),
      own(fields.time),
    );
    if (listed === undefined || compareRecords(body, listed) > 0) {
      this.#byClient.set(body.client, body);
    }
    return body;
  }

  /** The caller no longer holds `body`: unlisted once nobody does. */
  release(body: SharedRecord): void {
    if (--body.holders === 0 && this.#byClient.get(body.client) === body) {
      this.#byClient.delete(body.client);
    }
  }

  #origin(origin: string): string {
    const known = this.#origins.get(origin);
    if (known !== undefined) return known;
    const copy = own(origin);
    if (this.#origins.size < MAX_ORIGINS) this.#origins.set(copy, copy);
    return copy;
  }
}
