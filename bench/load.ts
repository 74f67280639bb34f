/**
 * Load generator for the herd benchmark. Run as its own process (several at once for many
 * connections, so one generator's event loop is not the bottleneck):
 *
 *     deno run -A bench/load.ts --port 12000 --connections 32 --duration-ms 5000 \
 *       --mode iamat|echo|whatsat [--rate R] [--warmup-ms W] [--start-at EPOCH_MS] [--hist] \
 *       [--location +34.068930-118.445127] [--spread-m 0] [--radius 10] [--bound 5]
 *
 * Each connection keeps ONE request outstanding: send a line, read its whole reply, send the next.
 * Prints one JSON line: {requests, seconds, throughput, p50, p99 (ms), errors, ...}; with `--hist`
 * it adds the serialized histogram so a parent can merge several processes (see bench/hist.ts).
 *
 * - Closed loop (default): each connection sends again as soon as its reply arrives.
 * - Open loop (`--rate R`, requests/s over all of this process's connections): connection k sends
 *   at start + (k + j·C)/R. When the previous reply is late, the next request goes out late and its
 *   latency is counted from when it SHOULD have been sent (no coordinated omission); when only the
 *   generator's timer fired late, latency counts from the actual send, so timer jitter on a busy
 *   box is not blamed on the server.
 *
 * Modes: `iamat` sends `IAMAT bench-<tag>-<conn> +34.068930-118.445127 <time>` with times strictly
 * increasing per client, so every IAMAT is a new record, and wants a reply starting `AT `. `echo`
 * sends the same line and wants it back byte for byte (bench/echo_server.ts). `whatsat` reports one
 * IAMAT per connection before the clock starts, then sends `WHATSAT bench-<tag>-<conn> 10 5` and
 * wants `AT ...` ending in a blank line (`--radius` and `--bound` change the 10 and 5).
 * `--location` is where every client reports from; `--spread-m M` moves connection k M·k metres
 * north of it, so WHATSATs of different connections are different queries (a Places layer that
 * coalesces identical queries in flight would otherwise answer 32 connections with one request).
 *
 * Loopback only, and bounded: it stops sending at the end of the window and exits at most
 * `--timeout-ms` later whatever the server does.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Histogram, type HistogramJSON } from "./hist.ts";

/** What the generator sends and what counts as a correct reply. */
export type LoadMode = "iamat" | "echo" | "whatsat";

/** Options of one generator run (the CLI flags, parsed). */
export interface LoadOptions {
  host: string;
  port: number;
  connections: number;
  durationMs: number;
  warmupMs: number;
  mode: LoadMode;
  /** Total requests/s over this process's connections; 0 = closed loop. */
  rate: number;
  /** Wall-clock ms (Date.now) at which sending starts, so several processes start together. */
  startAt: number;
  /** Makes client ids unique across processes and runs. */
  tag: string;
  /** A reply slower than this is an error and the connection is reopened. */
  timeoutMs: number;
  /** Attach the serialized histogram to the result, for merging across processes. */
  hist?: boolean;
  /** ISO 6709 location every client reports (default UCLA, `+34.068930-118.445127`). */
  location?: string;
  /** Connection k reports from `spreadM`·k metres north of `location` (default 0). */
  spreadM?: number;
  /** WHATSAT radius in km and bound (default 10 and 5). */
  radius?: string;
  bound?: string;
}

const DEFAULT_LOCATION = "+34.068930-118.445127";

/** `location` moved `metres` north (ISO 6709, 6 decimals); unchanged for 0. */
export function moveNorth(location: string, metres: number): string {
  if (metres === 0) return location;
  const m = /^([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)$/.exec(location);
  if (!m) throw new Error(`bad location ${location}`);
  const lat = Math.max(-89.999999, Math.min(89.999999, Number(m[1]) + metres / 111_195));
  const lng = Number(m[2]);
  const fmt = (v: number) => (v < 0 ? "-" : "+") + Math.abs(v).toFixed(6);
  return fmt(lat) + fmt(lng);
}

/** The one JSON line a generator prints. Latencies in ms. */
export interface LoadResult {
  mode: LoadMode;
  connections: number;
  rate: number;
  requests: number;
  seconds: number;
  throughput: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
  errors: number;
  /** The first few error descriptions, to tell a refused connect from a wrong reply. */
  errorSamples: string[];
  /**
   * iamat mode: each client's last time the server answered with `AT`, so the caller can check
   * that every server converged on it (the newest record per client is what must arrive).
   */
  last?: Record<string, string>;
  hist?: HistogramJSON;
}

const NL = 0x0a;
const AT = [0x41, 0x54, 0x20]; // "AT "
const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1"]);
const encoder = new TextEncoder();
const decoder = new TextDecoder("latin1");

/**
 * A connection with a receive buffer; replies are cut out of the byte stream by `frameEnd`.
 * Exported so bench/run.ts probes servers the same way the generator does.
 */
export class Client {
  #buf = new Uint8Array(64 * 1024);
  #len = 0;
  #scratch = new Uint8Array(64 * 1024);

  /** Wraps an open connection (the caller set no-delay if it wants it). */
  constructor(readonly conn: Deno.TcpConn) {}

  /** Sends `line` and resolves with the reply bytes; rejects on EOF or a socket error. */
  async request(line: Uint8Array, frameEnd: (b: Uint8Array) => number): Promise<Uint8Array> {
    let off = 0;
    while (off < line.length) off += await this.conn.write(line.subarray(off));
    while (true) {
      const end = frameEnd(this.#buf.subarray(0, this.#len));
      if (end >= 0) {
        const reply = this.#buf.slice(0, end);
        this.#buf.copyWithin(0, end, this.#len);
        this.#len -= end;
        return reply;
      }
      const n = await this.conn.read(this.#scratch);
      if (n === null) throw new Error("connection closed by server");
      if (this.#len + n > this.#buf.length) {
        const bigger = new Uint8Array(Math.max(this.#buf.length * 2, this.#len + n));
        bigger.set(this.#buf.subarray(0, this.#len));
        this.#buf = bigger;
      }
      this.#buf.set(this.#scratch.subarray(0, n), this.#len);
      this.#len += n;
    }
  }

  /** Closes the socket; safe to call twice. */
  close(): void {
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}

/** End (exclusive) of the first complete line in `b`, or -1. */
export function lineEnd(b: Uint8Array): number {
  const i = b.indexOf(NL);
  return i < 0 ? -1 : i + 1;
}

/** End of a WHATSAT reply: `AT ...` through the first blank line; a `? ...` error is one line. */
export function whatsatEnd(b: Uint8Array): number {
  if (b.length > 0 && b[0] === 0x3f) return lineEnd(b);
  for (let i = 1; i < b.length; i++) if (b[i] === NL && b[i - 1] === NL) return i + 1;
  return -1;
}

function startsWithAt(b: Uint8Array): boolean {
  return b.length > 3 && b[0] === AT[0] && b[1] === AT[1] && b[2] === AT[2];
}

/** POSIX time with exactly 9 fractional digits, strictly increasing per caller-held state. */
function makeClock(): () => string {
  let lastSec = 0;
  let lastNs = -1;
  return () => {
    const ms = performance.timeOrigin + performance.now();
    let sec = Math.floor(ms / 1000);
    let ns = Math.floor((ms - sec * 1000) * 1e6);
    if (sec < lastSec || (sec === lastSec && ns <= lastNs)) {
      sec = lastSec;
      ns = lastNs + 1;
      if (ns >= 1e9) [sec, ns] = [sec + 1, 0];
    }
    [lastSec, lastNs] = [sec, ns];
    return `${sec}.${String(ns).padStart(9, "0")}`;
  };
}

/** Milliseconds to the microsecond: finer digits are noise and clutter the JSON. */
const round3 = (ms: number) => Math.round(ms * 1000) / 1000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

/** Runs one generator in this process and returns its result (the CLI prints it). */
export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  if (!LOOPBACK.has(o.host)) throw new Error(`load.ts drives loopback only, not ${o.host}`);
  const hist = new Histogram();
  const last: Record<string, string> = {};
  const errorSamples: string[] = [];
  let errors = 0;
  const fail = (msg: string) => {
    errors++;
    if (errorSamples.length < 5) errorSamples.push(msg);
  };

  // Clock origin: performance.now() at the wall-clock moment `startAt`.
  const t0 = performance.now() + (o.startAt - Date.now());
  const measureFrom = t0 + o.warmupMs;
  const stopAt = measureFrom + o.durationMs;
  const hardStop = stopAt + o.timeoutMs;
  const frameEnd = o.mode === "whatsat" ? whatsatEnd : lineEnd;

  async function connect(): Promise<Client> {
    const conn = await Deno.connect({ hostname: o.host, port: o.port });
    conn.setNoDelay(true);
    return new Client(conn);
  }

  /** One request with a timeout; on a timeout the socket is closed, which rejects the read. */
  async function timed(
    c: Client,
    line: Uint8Array,
    end: (b: Uint8Array) => number = frameEnd,
  ): Promise<Uint8Array> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, rej) => {
      timer = setTimeout(() => {
        c.close();
        rej(new Error(`no reply within ${o.timeoutMs} ms`));
      }, o.timeoutMs);
    });
    const request = c.request(line, end);
    request.catch(() => {}); // after a timeout its rejection is expected and nobody awaits it
    try {
      return await Promise.race([request, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async function runConnection(k: number): Promise<void> {
    const client = `bench-${o.tag}-${k}`;
    const clock = makeClock();
    let time = "";
    const where = moveNorth(o.location ?? DEFAULT_LOCATION, (o.spreadM ?? 0) * k);
    const iamat = () => encoder.encode(`IAMAT ${client} ${where} ${time = clock()}\n`);
    const whatsat = encoder.encode(`WHATSAT ${client} ${o.radius ?? "10"} ${o.bound ?? "5"}\n`);
    const interval = o.rate > 0 ? (1000 * o.connections) / o.rate : 0;
    let c: Client | undefined;
    let lastReplyAt = 0;
    let j = 0;
    while (performance.now() < stopAt) {
      if (!c) {
        try {
          c = await connect();
          if (o.mode === "whatsat") {
            const r = await timed(c, iamat(), lineEnd); // an AT reply is one line
            if (!startsWithAt(r)) throw new Error(`IAMAT setup got ${decoder.decode(r).trim()}`);
          }
        } catch (e) {
          fail(`connect: ${(e as Error).message}`);
          c?.close();
          c = undefined;
          await sleep(100);
          continue;
        }
      }
      let intended = performance.now();
      if (interval > 0) {
        intended = t0 + (k * interval) / o.connections + j * interval;
        j++;
        if (intended >= stopAt) break;
        // No zero-delay sleep when behind: chained setTimeout(0)s get clamped to 4 ms.
        const wait = intended - performance.now();
        if (wait > 0) await sleep(wait);
      } else if (intended < t0) {
        await sleep(t0 - intended); // wait for the common start
        continue;
      }
      const sent = performance.now();
      // Backlogged (previous reply came after this one was due): count from the due time.
      const from = interval > 0 && lastReplyAt > intended ? intended : sent;
      const line = o.mode === "whatsat" ? whatsat : iamat();
      try {
        const reply = await timed(c, line);
        const now = performance.now();
        lastReplyAt = now;
        const ok = o.mode === "echo"
          ? reply.length === line.length && reply.every((b, i) => b === line[i])
          : o.mode === "whatsat"
          ? startsWithAt(reply) && reply.at(-2) === NL
          : startsWithAt(reply);
        if (!ok) {
          if (from >= measureFrom) fail(`bad reply: ${decoder.decode(reply.subarray(0, 200))}`);
        } else {
          if (o.mode === "iamat") last[client] = time;
          if (from >= measureFrom && from < stopAt) hist.record(now - from);
        }
      } catch (e) {
        if (performance.now() < hardStop) fail((e as Error).message);
        c.close();
        c = undefined;
      }
    }
    c?.close();
  }

  const loops = Array.from({ length: o.connections }, (_, k) => runConnection(k));
  let hardTimer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.all(loops),
    new Promise<void>((r) => hardTimer = setTimeout(r, Math.max(0, hardStop - performance.now()))),
  ]);
  clearTimeout(hardTimer);
  const seconds = o.durationMs / 1000;
  return {
    mode: o.mode,
    connections: o.connections,
    rate: o.rate,
    requests: hist.total,
    seconds,
    throughput: hist.total / seconds,
    p50: round3(hist.quantile(0.5)),
    p99: round3(hist.quantile(0.99)),
    p999: round3(hist.quantile(0.999)),
    max: round3(hist.maxMs),
    mean: round3(hist.mean()),
    errors,
    errorSamples,
    ...(o.mode === "iamat" ? { last } : {}),
    ...(o.hist ? { hist: hist.toJSON() } : {}),
  };
}

if (import.meta.main) {
  const { values: v } = parseArgs({
    args: Deno.args,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string" },
      connections: { type: "string", default: "1" },
      "duration-ms": { type: "string", default: "5000" },
      "warmup-ms": { type: "string", default: "0" },
      mode: { type: "string", default: "iamat" },
      rate: { type: "string", default: "0" },
      "start-at": { type: "string" },
      tag: { type: "string", default: String(Deno.pid) },
      "timeout-ms": { type: "string", default: "5000" },
      hist: { type: "boolean", default: false },
      location: { type: "string", default: DEFAULT_LOCATION },
      "spread-m": { type: "string", default: "0" },
      radius: { type: "string", default: "10" },
      bound: { type: "string", default: "5" },
    },
  });
  if (!v.port || !["iamat", "echo", "whatsat"].includes(v.mode)) {
    console.error(
      "usage: load.ts --port P [--host 127.0.0.1] [--connections C] [--duration-ms D] " +
        "[--warmup-ms W] [--mode iamat|echo|whatsat] [--rate R] [--start-at EPOCH_MS] [--hist]",
    );
    Deno.exit(2);
  }
  const opts: LoadOptions = {
    host: v.host,
    port: Number(v.port),
    connections: Math.max(1, Number(v.connections)),
    durationMs: Number(v["duration-ms"]),
    warmupMs: Number(v["warmup-ms"]),
    mode: v.mode as LoadMode,
    rate: Number(v.rate),
    startAt: v["start-at"] ? Number(v["start-at"]) : Date.now(),
    tag: v.tag,
    timeoutMs: Number(v["timeout-ms"]),
    hist: v.hist,
    location: v.location,
    spreadM: Number(v["spread-m"]),
    radius: v.radius,
    bound: v.bound,
  };
  console.log(JSON.stringify(await runLoad(opts)));
  // Reads still pending on a stuck server would keep the process alive: leave now.
  Deno.exit(0);
}
