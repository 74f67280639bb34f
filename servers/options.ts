/**
 * Default tunables for servers, in one place, so `main.ts`, tests and benchmarks agree.
 *
 * @module
 */

import type { ConnectionOptions } from "./connection.ts";
import { DEFAULT_LINE_LIMIT } from "./lines.ts";
import { DEFAULT_LINK_OPTIONS, type LinkOptions } from "./peers.ts";

/** Server tunables that have defaults (everything but the Places provider). */
export interface ServerDefaults extends ConnectionOptions {
  whatsatGraceMs: number;
  maxFutureS: number;
  receiptWaitMs: number;
  maxConnections: number;
  link: LinkOptions;
}

/**
 * The defaults: 64 KiB lines, 500 ms partial lines, 5 min idle timeout, 1024 pending replies,
 * 250 ms WHATSAT grace, IAMAT times at most a day ahead, a wait of up to 50 ms for neighbours' receipt
 * of a new record, 10,000 connections per server.
 *
 * @example
 * ```ts
 * import { createOfflineProvider } from "./places/offline.ts";
 *
 * const places = createOfflineProvider();
 * const secret = Deno.env.get("HERD_SECRET")!;
 * const opts = { ...SERVER_DEFAULTS, places, secret };
 * ```
 */
export const SERVER_DEFAULTS: ServerDefaults = {
  lineLimit: DEFAULT_LINE_LIMIT,
  partialLineMs: 500,
  idleTimeoutMs: 300_000,
  maxPendingReplies: 1024,
  whatsatGraceMs: 250,
  maxFutureS: 86_400,
  receiptWaitMs: 50,
  maxConnections: 10_000,
  link: DEFAULT_LINK_OPTIONS,
};
