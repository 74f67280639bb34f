/**
 * Run-time control of a link, for showing a herd's most instructive failure on purpose: a link
 * can be cut (closed, and neither dialled nor accepted until restored, so either end's cut stops
 * it) and slowed (every line sent on it waits `delayMs` first, in order). The herd routes around
 * a cut like around any dead link, and catches up over it once restored (docs/reliability.md).
 *
 * Pure rules (validation) and the ordered delay queue live here; `peers.ts` applies them.
 *
 * @module
 */

/** A link's run-time settings, at one end. */
export interface LinkSettings {
  /** Closed, not redialled, inbound dials refused. */
  cut: boolean;
  /** Added to every line this end sends on the link (ms). */
  delayMs: number;
}

/** A change to a link's settings; absent fields stay as they are. */
export type LinkChange = Partial<LinkSettings>;

/** The settings of a link nobody touched. */
export const NORMAL_LINK: Readonly<LinkSettings> = { cut: false, delayMs: 0 };

/**
 * Longest delay accepted. A delay reaching 3 heartbeats (3 s by default) makes the far end time
 * the link out, as a link that slow would; the cap keeps a typo from parking writes for hours.
 */
export const MAX_LINK_DELAY_MS = 10_000;

/**
 * Checks a change as it comes from outside (an HTTP body): an object with `cut` (boolean) and/or
 * `delayMs` (whole ms, 0 to {@linkcode MAX_LINK_DELAY_MS}), nothing else.
 *
 * @example
 * ```ts
 * import { parseLinkChange } from "./link_control.ts";
 * parseLinkChange({ cut: true }); // { change: { cut: true } }
 * parseLinkChange({ delayMs: -1 }); // { error: "delayMs must be a whole number of ms from 0 to 10000" }
 * ```
 */
export function parseLinkChange(body: unknown): { change: LinkChange } | { error: string } {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return { error: 'body must be a JSON object: {"cut": true|false} and/or {"delayMs": N}' };
  }
  const change: LinkChange = {};
  for (const [key, value] of Object.entries(body)) {
    if (key === "cut") {
      if (typeof value !== "boolean") return { error: "cut must be true or false" };
      change.cut = value;
    } else if (key === "delayMs") {
      if (
        !Number.isInteger(value) || (value as number) < 0 || (value as number) > MAX_LINK_DELAY_MS
      ) {
        return { error: `delayMs must be a whole number of ms from 0 to ${MAX_LINK_DELAY_MS}` };
      }
      change.delayMs = value as number;
    } else {
      return { error: `unknown field ${JSON.stringify(key.slice(0, 40))} (cut, delayMs)` };
    }
  }
  if (change.cut === undefined && change.delayMs === undefined) {
    return { error: 'nothing to change: give "cut" and/or "delayMs"' };
  }
  return { change };
}

/**
 * Writes that each wait until `delayMs` after they were queued, in queue order (a line never
 * overtakes the one before it, even when the delay shrinks meanwhile).
 *
 * @example
 * ```ts
 * import { LineDelay } from "./link_control.ts";
 * import { writeAll } from "./io.ts";
 * declare const conn: Deno.Conn;
 * const delay = new LineDelay();
 * await delay.run(200, () => writeAll(conn, new TextEncoder().encode("PING\n"))); // in 200 ms
 * ```
 */
export class LineDelay {
  #tail: Promise<void> = Promise.resolve();
  #queued = 0;
  #generation = 0;
  #timers = new Map<ReturnType<typeof setTimeout>, () => void>();

  /** Writes queued and not yet done: while any are, every write must queue behind them. */
  get queued(): number {
    return this.#queued;
  }

  /** Runs `write` once `ms` have passed and every earlier write is done. */
  run(ms: number, write: () => Promise<void>): Promise<void> {
    const due = performance.now() + ms;
    const generation = this.#generation;
    this.#queued++;
    const p = this.#tail
      .then(() => this.#until(due, generation))
      .then(write)
      .finally(() => this.#queued--);
    this.#tail = p.catch(() => {});
    return p;
  }

  /** Lets every queued write go at once (its connection is gone: they fail fast, no timer lingers). */
  release(): void {
    this.#generation++;
    for (const [id, resolve] of this.#timers) {
      clearTimeout(id);
      resolve();
    }
    this.#timers.clear();
  }

  #until(due: number, generation: number): Promise<void> | undefined {
    const wait = due - performance.now();
    if (wait <= 0 || generation !== this.#generation) return undefined;
    return new Promise((resolve) => {
      const id = setTimeout(() => {
        this.#timers.delete(id);
        resolve();
      }, wait);
      this.#timers.set(id, resolve);
    });
  }
}
