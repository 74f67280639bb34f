/**
 * Stored records and an error-collecting bus, for tests of the record log (servers/persist.ts)
 * that run without a herd.
 *
 * @module
 */

import type { AtFields } from "../../servers/record.ts";
import type { StoredRecord } from "../../servers/store.ts";
import { type ErrorEvent, EventBus } from "../../servers/events.ts";

/**
 * A valid stored record of `client` with sequence number `seq` (Hill's, from a client).
 *
 * @example
 * ```ts
 * storedRecord("kiwi", 3).location; // "+34.068930-118.445127"
 * ```
 */
export function storedRecord(
  client: string,
  seq: number,
  over: Partial<StoredRecord> = {},
): StoredRecord {
  return {
    origin: "Hill",
    diff: "+0.263873386",
    client,
    location: "+34.068930-118.445127",
    time: "1621464827.959498503",
    seq,
    via: -1,
    ...over,
  };
}

/**
 * A valid record of `client` at `time`, as a client's IAMAT at Hill gives it (for a store's
 * `offer`).
 *
 * @example
 * ```ts
 * recordAt("kiwi", "3").diff; // "+0.100000000"
 * ```
 */
export function recordAt(client: string, time: string): AtFields {
  return { origin: "Hill", diff: "+0.100000000", client, location: "+34.068930-118.445127", time };
}

/**
 * A bus that keeps the error events emitted on it.
 *
 * @example
 * ```ts
 * const { bus, errors } = errorBus();
 * bus.emit({ kind: "error", t: 0, server: "Hill", reason: "disk-write", message: "full" });
 * errors.length; // 1
 * ```
 */
export function errorBus(): { bus: EventBus; errors: ErrorEvent[] } {
  const bus = new EventBus();
  const errors: ErrorEvent[] = [];
  bus.subscribe((e) => {
    if (e.kind === "error") errors.push(e);
  });
  return { bus, errors };
}
