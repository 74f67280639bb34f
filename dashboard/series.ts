/**
 * Per-server history for the dashboard's sparklines: records stored per second (from
 * `location.accepted` events, counted as they happen, so a browser that misses events still
 * gets exact rates) and open connections (sampled from the snapshot), one point a second for the
 * last few minutes. Bounded: `points` numbers per server and series.
 *
 * @module
 */

import type { HerdView, SeriesData, SeriesTick } from "./types.ts";
import { errText } from "../servers/text.ts";

/** Tuning knobs. */
export interface SeriesOptions {
  /** Points kept per series. Default 180 (three minutes at one a second). */
  points?: number;
  /** Milliseconds between points. Default 1 000. */
  stepMs?: number;
  /** Milliseconds clock (tests). */
  now?: () => number;
}

interface Lines {
  upd: number[];
  conns: number[];
}

/** The sparklines' data. See the module doc. */
export class ServerSeries {
  readonly #herd: HerdView;
  readonly #points: number;
  readonly #step: number;
  readonly #now: () => number;
  readonly #lines = new Map<string, Lines>();
  /** Records stored since the last point, per server. */
  readonly #counts = new Map<string, number>();
  readonly #off: () => void;
  readonly #listeners = new Set<(tick: SeriesTick) => void>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #t: number;

  constructor(herd: HerdView, opts: SeriesOptions = {}) {
    this.#herd = herd;
    this.#points = Math.max(2, opts.points ?? 180);
    this.#step = opts.stepMs ?? 1_000;
    this.#now = opts.now ?? Date.now;
    this.#t = this.#now();
    this.#off = herd.bus.subscribe((e) => {
      // A remote herd's catch-up read comes as one batch of `count` records.
      const n = e.kind === "location.accepted" ? 1 : e.kind === "location.batch" ? e.count : 0;
      if (n > 0) this.#counts.set(e.server, (this.#counts.get(e.server) ?? 0) + n);
    });
    this.#timer = setInterval(() => this.tick(), this.#step);
    // The dashboard's lifetime is bound to its HTTP server, not to this timer.
    Deno.unrefTimer(this.#timer);
  }

  /** Calls `fn` with every new point; returns the unsubscribe function. */
  onTick(fn: (tick: SeriesTick) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Takes one point for every server (the timer calls it; tests may too). */
  tick(): SeriesTick {
    this.#t = this.#now();
    const points: Record<string, [number, number]> = {};
    for (const s of this.#herd.snapshot(0).servers) {
      let lines = this.#lines.get(s.name);
      if (lines === undefined) {
        // A server seen for the first time has no history: zeros, so every line is one length.
        const zeros = new Array<number>(this.#points).fill(0);
        this.#lines.set(s.name, lines = { upd: zeros, conns: zeros.slice() });
      }
      const upd = Math.round((this.#counts.get(s.name) ?? 0) * 1000 / this.#step);
      const conns = s.running ? s.connections : 0;
      lines.upd.push(upd);
      lines.conns.push(conns);
      lines.upd.shift();
      lines.conns.shift();
      points[s.name] = [upd, conns];
    }
    this.#counts.clear();
    const tick: SeriesTick = { t: this.#t, points };
    for (const fn of this.#listeners) {
      try {
        fn(tick);
      } catch (err) {
        console.error(`series listener failed: ${errText(err, true)}`);
      }
    }
    return tick;
  }

  /** Every series, oldest point first. */
  data(): SeriesData {
    const servers: SeriesData["servers"] = {};
    for (const [name, l] of this.#lines) servers[name] = { upd: [...l.upd], conns: [...l.conns] };
    return { step: this.#step, t: this.#t, servers };
  }

  /** Stops the timer and leaves the bus. */
  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#off();
  }
}
