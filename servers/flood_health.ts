/**
 * Whether this server may send records along the flood's trees (flood_tree.ts), or must flood
 * them on every link as before. Pure: the caller passes the time.
 *
 * A tree skips a neighbour because another server will deliver: a tree is only as good as every
 * link and server on it. So the trees are used only while the whole herd is healthy as far as this
 * server knows: none of its own links is in trouble (down, catching up, cut, delayed, or not
 * agreeing on the trees: `trouble`), and no server's `WARN` (sent every half heartbeat by a server
 * with trouble, passed on once by each server) came within the quiet time. Any failure anywhere
 * thus turns the herd back to the full flood within a heartbeat or so of its detection.
 *
 * Records sent along a tree just before a failure was known may have been skipped towards a
 * server the failure cut off. So when a server turns from healthy to degraded it floods again
 * every record it stored within the window (`windowMs`, longer than the slowest detection of a
 * dead link: a closed one at once, a black-holed one stalls after 1 s without a receipt and is
 * dropped after 3 heartbeats): each server does, so whatever the trees skipped reaches every
 * server still reachable (servers/server.ts `#treeDegraded`). It costs one more full flood of the
 * window's records, mostly copies: a failure under load is a burst of work.
 *
 * @module
 */

/**
 * A warning's copies all arrive within this (each server passes it on once, at once): later, its
 * number is forgotten.
 */
const WARN_FORGET_MS = 30_000;
/** Warning numbers kept per server (a real one warns every half heartbeat: 60 in 30 s). */
const WARN_SEEN_MAX = 256;

/** The tunables, from the link heartbeat. */
export interface FloodHealthTimes {
  /** How long after the last `WARN` the herd counts as degraded. */
  quietMs: number;
  /** Records stored this long before a turn to degraded are flooded again. */
  windowMs: number;
}

/** The times for a heartbeat interval (links.heartbeatMs). */
export function floodHealthTimes(heartbeatMs: number): FloodHealthTimes {
  return { quietMs: 3 * heartbeatMs, windowMs: Math.max(5_000, 5 * heartbeatMs) };
}

/**
 * One server's health state for the trees.
 *
 * @example
 * ```ts
 * const h = new FloodHealth("Hill", { quietMs: 3000, windowMs: 10000 });
 * h.update(false, 0, 1); // no trouble, but never quiet long enough yet: "degraded"
 * h.update(false, 3001, 1); // "healthy"
 * h.warned("Smith", 7, 3002); // true: a new warning, pass it on
 * h.healthy; // false
 * ```
 */
export class FloodHealth {
  readonly name: string;
  #times: FloodHealthTimes;
  /**
   * The warnings seen lately per server (n → when, oldest first): a copy come round again is not
   * passed on. A set, not the newest n: a forged `WARN Hill <huge n>` must not make every later
   * real warning of Hill look old (nor must a clock set back across a restart).
   */
  #seen = new Map<string, Map<number, number>>();
  /** When the herd last looked unhealthy to us (our trouble or a warning). */
  #troubleAt: number;
  #healthy = false;
  /** Our store's head at times of past updates (oldest first): where a window starts. */
  #heads: { t: number; seq: number }[] = [];
  #warnN = 0;

  constructor(name: string, times: FloodHealthTimes, now = 0) {
    this.name = name;
    this.#times = times;
    this.#troubleAt = now;
  }

  /** True while the trees may be used. */
  get healthy(): boolean {
    return this.#healthy;
  }

  /**
   * A server's warning (`WARN server n`) arrived: true when it is new and kept (pass it on). A
   * new one counts as trouble even when not kept. Our own, come back around a cycle, is not.
   */
  warned(server: string, n: number, now: number): boolean {
    if (server === this.name) return false;
    let seen = this.#seen.get(server);
    if (seen === undefined) this.#seen.set(server, seen = new Map());
    for (const [k, t] of seen) {
      if (t > now - WARN_FORGET_MS) break;
      seen.delete(k);
    }
    if (seen.has(n)) return false;
    this.#troubleAt = now;
    this.#healthy = false;
    // Bounded per name (the caller admits only the herd's names). Full (a peer sending new
    // numbers in a loop): not kept, so not passed on; pushing out an older one instead would
    // pass that one's late copies on again, and again: a storm that never ends.
    if (seen.size >= WARN_SEEN_MAX) return false;
    seen.set(n, now);
    return true;
  }

  /** The number for our next warning (grows across restarts: a wall-clock base). */
  nextWarning(): number {
    this.#warnN = Math.max(this.#warnN + 1, Date.now());
    return this.#warnN;
  }

  /**
   * Our own links' state (`trouble`) at `now`, with our store's `head`; returns "degraded" when
   * the herd just turned from healthy to degraded (flood the window again: `windowStart`),
   * "healthy" when it just turned healthy, undefined when nothing changed.
   */
  update(trouble: boolean, now: number, head: number): "healthy" | "degraded" | undefined {
    const heads = this.#heads;
    if (heads.length === 0 || heads[heads.length - 1].seq !== head) {
      heads.push({ t: now, seq: head });
    }
    // Keep one sample older than the window: it says where the window starts.
    while (heads.length > 2 && heads[1].t <= now - this.#times.windowMs) heads.shift();
    if (trouble) this.#troubleAt = now;
    const healthy = !trouble && now - this.#troubleAt > this.#times.quietMs;
    if (healthy === this.#healthy) return undefined;
    this.#healthy = healthy;
    return healthy ? "healthy" : "degraded";
  }

  /**
   * The head of our store `windowMs` before `now` (0 when that is older than what we know):
   * records numbered after it were stored within the window.
   */
  windowStart(now: number): number {
    let seq = 0;
    for (const h of this.#heads) {
      if (h.t > now - this.#times.windowMs) break;
      seq = h.seq;
    }
    return seq;
  }
}
