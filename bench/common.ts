/**
 * What every part of the benchmark shares: child processes that are always killed, ports, probe
 * connections, the run plan, and load points measured with bench/load.ts processes.
 *
 * @module
 */

import { SEED_LINKS, SEED_NAMES, seedConfigJson, type SeedServerJson } from "../servers/config.ts";
import { Histogram, type HistogramJSON } from "./hist.ts";
import { Client, type LoadMode, type LoadResult } from "./load.ts";

export const ROOT = new URL("../", import.meta.url).pathname;
export const encoder = new TextEncoder();
export const decoder = new TextDecoder("latin1");
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const startedAt = performance.now();
/** Progress on stderr with the elapsed time, to see where a run's time goes. */
export const progress = (msg: string) =>
  console.error(`${((performance.now() - startedAt) / 1000).toFixed(1).padStart(5)}s ${msg}`);

/** The seed herd (servers/config.ts): names in port order and the undirected links. */
export const HERD_NAMES: string[] = [...SEED_NAMES];
/** The seed herd's links. */
export const HERD_LINKS: [string, string][] = SEED_LINKS.map(([a, b]) => [a, b]);

/** The herd config JSON of the seed topology on ports base..base+4, on loopback. */
export function herdConfig(base: number): { servers: Record<string, SeedServerJson> } {
  return seedConfigJson(HERD_NAMES.map((_, i) => base + i), "127.0.0.1");
}

// ---------------------------------------------------------------------------------------------
// Child processes: every one is tracked so that any exit path (error, watchdog, Ctrl-C) kills it.

export const children = new Set<Deno.ChildProcess>();

/**
 * Runs a child (Deno unless `cmd` says otherwise; `args` after the executable, from the
 * repository root), tracked in `children` so a watchdog can kill it, and parses the last line of
 * its stdout as JSON.
 */
export async function runJsonChild<T>(
  args: string[],
  what: string,
  cmd = Deno.execPath(),
): Promise<T> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  children.add(child);
  try {
    const out = await child.output();
    const dec = new TextDecoder();
    const line = dec.decode(out.stdout).trim().split("\n").pop() ?? "";
    try {
      return JSON.parse(line) as T;
    } catch {
      throw new Error(
        `${what} gave no result (exit ${out.code}): ${dec.decode(out.stderr).slice(-500)}`,
      );
    }
  } finally {
    children.delete(child);
  }
}

/** A started server process. */
export interface Proc {
  child: Deno.ChildProcess;
  /** The stdout line that matched `ready` ("" without one). */
  readyLine: string;
  stop(): Promise<void>;
}

/**
 * Spawns a child from the repo root, copying its stdout and stderr to `logFile`. Resolves once a
 * stdout line matches `ready` (when given), and rejects if the child exits first or `readyMs` runs
 * out.
 */
export async function startProcess(
  cmd: string,
  args: string[],
  logFile: string,
  opts: { ready?: RegExp; readyMs?: number; env?: Record<string, string> } = {},
): Promise<Proc> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    env: opts.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  children.add(child);
  const log = await Deno.open(logFile, { write: true, create: true, truncate: true });
  let sawReady: (line: string) => void = () => {};
  let readyLine = "";
  const ready = new Promise<string>((r) => sawReady = r);
  const pump = async (stream: ReadableStream<Uint8Array>, watch: boolean) => {
    let pending = "";
    for await (const chunk of stream) {
      await log.write(chunk).catch(() => {});
      if (watch && opts.ready) {
        pending += decoder.decode(chunk);
        const lines = pending.split("\n");
        pending = lines.pop()!;
        const hit = lines.find((l) => opts.ready!.test(l));
        if (hit !== undefined) sawReady(hit);
      }
    }
  };
  const pumps = Promise.all([pump(child.stdout, true), pump(child.stderr, false)]).catch(() => {})
    .finally(() => log.close());
  const stop = async () => {
    await killChild(child);
    await pumps;
  };
  if (opts.ready) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      ready.then((line) => {
        readyLine = line;
        return "ready";
      }),
      child.status.then((s) => `exited with code ${s.code}`),
      new Promise<string>((r) => timer = setTimeout(() => r("timed out"), opts.readyMs ?? 15000)),
    ]);
    clearTimeout(timer);
    if (outcome !== "ready") {
      await stop();
      throw new Error(`${cmd} ${args.join(" ")}: ${outcome} before ready (see ${logFile})`);
    }
  }
  return { child, readyLine, stop };
}

/** SIGTERM, then SIGKILL after 2 s: servers get a chance to print their counters. */
export async function killChild(child: Deno.ChildProcess): Promise<void> {
  if (!children.has(child)) return;
  try {
    child.kill("SIGTERM");
  } catch { /* already gone */ }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const done = await Promise.race([
    child.status.then(() => true),
    new Promise<boolean>((r) => timer = setTimeout(() => r(false), 2000)),
  ]);
  clearTimeout(timer);
  if (!done) {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await child.status;
  }
  children.delete(child);
}

export async function killAll(): Promise<void> {
  await Promise.all([...children].map(killChild));
}

/** Last resort when the process is leaving without running `finally` blocks. */
export function killAllNow(): void {
  for (const c of children) {
    try {
      c.kill("SIGKILL");
    } catch { /* already gone */ }
  }
}

// ---------------------------------------------------------------------------------------------
// Ports and probes.

export async function portOpen(port: number): Promise<boolean> {
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.close();
    return true;
  } catch {
    return false;
  }
}

/** Waits until every port accepts a connection. */
export async function waitForPorts(ports: number[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (const p of ports) {
    while (!(await portOpen(p))) {
      if (Date.now() > deadline) return false;
      await sleep(50);
    }
  }
  return true;
}

/** A base port with `n` consecutive free ports after it, so two runs (or a dev herd) don't clash. */
export function freePortBase(n: number, from: number): number {
  for (let base = from; base < 60000; base += 10) {
    const held: Deno.Listener[] = [];
    try {
      for (let i = 0; i < n; i++) held.push(Deno.listen({ hostname: "127.0.0.1", port: base + i }));
      return base;
    } catch {
      // busy: try the next block
    } finally {
      for (const l of held) l.close();
    }
  }
  throw new Error("no free port block");
}

export async function openClient(port: number): Promise<Client> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  return new Client(conn);
}

/** POSIX time with 9 fractional digits, for probe IAMATs. */
export function nowText(): string {
  const ms = performance.timeOrigin + performance.now();
  const sec = Math.floor(ms / 1000);
  return `${sec}.${String(Math.floor((ms - sec * 1000) * 1e6)).padStart(9, "0")}`;
}

// ---------------------------------------------------------------------------------------------
// Load runs.

/** Durations and sizes of one run (quick or full). */
export interface Plan {
  quick: boolean;
  warmupMs: number;
  durationMs: number;
  connections: number[];
  halfPeakConnections: number;
  propagationSamples: number;
  /** Longest wait for a herd's counters to stop moving after a load point. */
  settleMs: number;
  genProcs: number;
  watchdogMs: number;
  /** Pause between marker IAMATs while propagation is sampled under load. */
  markerGapMs: number;
  /** Connection counts of the WHATSAT points. */
  whatsatConnections: number[];
  /** Distinct clients loaded for the memory figure (known to all five servers). */
  memoryClients: number;
  /** Records the restarted server has missed in the catch-up figure. */
  catchupRecords: number;
  /** Concurrent dashboard event-stream readers in the SSE-cost figure. */
  sseSubscribers: number;
}

/** Flooding cost of one load point. */
export interface FloodStats {
  /** New records at the entry server during the point. */
  updates: number;
  /** Inter-server messages per update. */
  messagesPerUpdate: number;
  /**
   * False when the counters were still moving at the settle deadline (a herd that floods from a
   * backlog long after replying): messagesPerUpdate is then only approximate.
   */
  settled: boolean;
  floodErrors?: number;
}

/**
 * Convergence after a load point: a herd may skip records superseded while queued (only the
 * newest per client must arrive), so rather than count records, ask every server for each load
 * client's record and compare with the last time that client was acknowledged.
 */
export interface Convergence {
  /** (client, server) pairs checked. */
  pairs: number;
  /** Share of pairs holding the client's newest record at the end. */
  share: number;
  /** ms after the load stopped until all pairs matched, or null. */
  ms: number | null;
}

/** One merged measurement: what the table, the JSON and the chart show. */
export interface Point {
  series: string;
  /** The load's request kind ("geoadd": Redis, through bench/loadgen.c only). */
  mode: LoadMode | "geoadd";
  connections: number;
  /** Open-loop total rate, 0 for closed loop. */
  rate: number;
  requests: number;
  throughput: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  errors: number;
  errorSamples: string[];
  /**
   * Native generator only: p50 / p99 (ms) from each request's actual send. In open loop a
   * request waits to be sent while its connection waits for a late reply; p50 / p99 count from
   * when it was due, these without that queue (BENCHMARKS.md, "Five processes of 2026-11-28,
   * second pass").
   */
  sentP50?: number;
  sentP99?: number;
  /** Herd points: flooding counters over this point (null when the herd has no counters). */
  flood?: FloodStats | null;
  /** Herd points: did every server end up with each client's newest record? */
  converged?: Convergence;
}

/** Each load client's last acknowledged IAMAT time (from load.ts), keyed by client id. */
export type LastTimes = Record<string, string>;

/** A start time for {@linkcode measure} that leaves its generators time to boot (800 ms). */
export function loadStartAt(): number {
  return Date.now() + 800;
}

/** Runs bench/load.ts in `procs` processes against one port and merges their histograms. */
export async function measure(
  plan: Plan,
  series: string,
  port: number,
  mode: LoadMode,
  connections: number,
  rate = 0,
  opts: {
    /** Date.now() at which the generators start sending (default: 800 ms from now). */
    startAt?: number;
    /** More load.ts flags (e.g. `--radius 50 --bound 20`). */
    extraArgs?: string[];
  } = {},
): Promise<[Point, LastTimes, number]> {
  const procs = Math.min(connections >= 64 ? plan.genProcs : 1, connections);
  // Time for every generator to boot and connect.
  const startAt = opts.startAt ?? loadStartAt();
  // End of the measured window on this process's performance clock.
  const windowEnd = performance.now() + (startAt - Date.now()) + plan.warmupMs + plan.durationMs;
  const runs = Array.from({ length: procs }, async (_, i) => {
    const conns = Math.floor(connections / procs) + (i < connections % procs ? 1 : 0);
    const args = [
      "run",
      "-A",
      "bench/load.ts",
      "--port",
      String(port),
      "--connections",
      String(conns),
      "--duration-ms",
      String(plan.durationMs),
      "--warmup-ms",
      String(plan.warmupMs),
      "--mode",
      mode,
      "--start-at",
      String(startAt),
      "--tag",
      `${series.replace(/\W+/g, "")}${Date.now() % 1e6}p${i}`,
      "--hist",
    ];
    if (rate > 0) args.push("--rate", String((rate * conns) / connections));
    args.push(...(opts.extraArgs ?? []));
    return await runJsonChild<LoadResult>(args, "load.ts");
  });
  const results = await Promise.all(runs);
  const hist = new Histogram();
  for (const r of results) hist.merge(r.hist as HistogramJSON);
  const r3 = (v: number) => Math.round(v * 1000) / 1000;
  const last: LastTimes = Object.assign({}, ...results.map((r) => r.last ?? {}));
  const point: Point = {
    series,
    mode,
    connections,
    rate: Math.round(rate),
    requests: hist.total,
    throughput: Math.round(hist.total / (plan.durationMs / 1000)),
    p50: r3(hist.quantile(0.5)),
    p99: r3(hist.quantile(0.99)),
    p999: r3(hist.quantile(0.999)),
    max: r3(hist.maxMs),
    errors: results.reduce((a, r) => a + r.errors, 0),
    errorSamples: results.flatMap((r) => r.errorSamples).slice(0, 5),
  };
  return [point, last, windowEnd];
}

/** The 1-minute load average, rounded: recorded beside every figure (the box is shared). */
export function loadavg(): number {
  return Math.round(Deno.loadavg()[0] * 100) / 100;
}

/** VmRSS and VmHWM (peak) of a process in bytes, from /proc; null when it is gone. */
export function processMemory(pid: number): { rss: number; hwm: number } | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
    return { rss: kb("VmRSS") * 1024, hwm: kb("VmHWM") * 1024 };
  } catch {
    return null;
  }
}

/**
 * CPU time (user + system, all threads) a process has used so far, in ms, from /proc; null when
 * it is gone. Unlike wall time it hardly moves with the machine's load.
 */
export function processCpuMs(pid: number): number | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // Fields after the command's closing parenthesis; utime and stime are the 14th and 15th.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return null;
  }
}

/** USER_HZ: the unit of /proc/PID/stat's times (100 on Linux everywhere). */
const CLOCK_TICKS = 100;

/** Bytes as MiB with one decimal. */
export function mib(bytes: number): number {
  return Math.round((bytes / 1048576) * 10) / 10;
}

/** Rounds to 3 decimals (ms figures: finer digits are noise). */
export const r3 = (v: number): number => Math.round(v * 1000) / 1000;

/**
 * A free block of `n` consecutive ports below the kernel's ephemeral range, so that a server's
 * port cannot be taken by some outgoing connection while that server is down (catch-up).
 */
export function stablePortBase(n: number, from: number): number {
  let low = 32768;
  try {
    low = Number(
      Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").trim().split(/\s+/)[0],
    );
  } catch {
    // not Linux
  }
  const base = freePortBase(n, from);
  if (base + n > low) throw new Error(`no free port block below ${low} from ${from}`);
  return base;
}
