/**
 * The compare part (issue 13): our herd beside the machine's floor and replicated Redis, every
 * system loaded by the same native generator (bench/loadgen.c) in the same run.
 *
 * Systems, all running at once and loaded one at a time:
 * - C line echo (bench/echo.c), the floor; also driven by a generator with 2 threads, to show the
 *   floor is the server's and not the generator's;
 * - Deno line echo and Deno "AT" echo (bench/echo_server.ts `--reply line|at`);
 * - replicated Redis, GEOADD on the primary of five nodes (bench/redis.ts);
 * - our herd as `main.ts start` and as five `main.ts server` processes, persistence and logs on,
 *   IAMAT at Hill.
 *
 * At 32 connections the systems run in interleaved rounds (each round loads every system once,
 * in the same order), so the machine's drift hits all alike; ratios are taken within a round and
 * their median is the figure. Then 1 and 256 connections once each, and both herds in open loop
 * at half of their 32-connection peak for the p99 target. Then Redis's RSS with the memory
 * figure's client count on all five nodes, and a replica's catch-up after restarting empty.
 *
 * Without `cc`, the Deno generator (bench/load.ts) stands in, loudly; Redis GEOADD then has no
 * generator and its load rows are skipped.
 *
 * @module
 */

import {
  HERD_NAMES,
  loadavg,
  measure,
  type Plan,
  type Point,
  type Proc,
  progress,
} from "./common.ts";
import { startEcho } from "./echo.ts";
import { median } from "./herd.ts";
import {
  type HerdDir,
  launchServer,
  launchStart,
  makeHerdDir,
  waitForHerdLinks,
} from "./herd_proc.ts";
import { buildNative, ccAvailable, loudly, runLoadgen, startNativeEcho } from "./native.ts";
import {
  ensureRedis,
  redisCatchup,
  type RedisCatchupReport,
  redisMemory,
  type RedisMemoryReport,
  type ReplicatedRedis,
  startReplicatedRedis,
} from "./redis.ts";
import { randomHex } from "./observer.ts";

/** The systems of the compare table, in the order each round loads them. */
export const SYSTEMS = {
  cEcho: "C line echo (floor)",
  cEcho2: "C line echo, generator ×2 threads",
  denoEcho: "Deno line echo",
  denoAt: "Deno AT echo",
  redis: "Redis GEOADD, primary + 4 replicas",
  start: "our herd, `start`",
  servers: "our herd, 5 `server` processes",
} as const;
export type SystemKey = keyof typeof SYSTEMS;

/** What a system answers: decides the request line (and the fallback generator's mode). */
type Kind = "echo" | "iamat" | "geoadd";

interface System {
  key: SystemKey;
  kind: Kind;
  port: number;
  threads: number;
}

/** One round at 32 connections: every system's point. */
export interface CompareRound {
  points: Partial<Record<SystemKey, Point>>;
  loadavg: number;
}

/** Everything the compare part measured. */
export interface CompareReport {
  /** "loadgen.c" or "bench/load.ts (fallback: no cc)". */
  generator: string;
  connections: number;
  rounds: CompareRound[];
  /** Median throughput per system over the rounds, at 32 connections. */
  median32: Partial<Record<SystemKey, number>>;
  /** Per-round ratios, and their median: herd ÷ Redis, floor with 2 generator threads ÷ 1. */
  ratios: Record<string, { perRound: number[]; median: number }>;
  /** 1 and 256 connections (and whatever else the plan lists), one point each per system. */
  points: Point[];
  /** Open loop at half of each herd's median 32-connection throughput. */
  halfPeak: Partial<Record<"start" | "servers", Point>>;
  redis: {
    memory?: RedisMemoryReport | { error: string };
    catchup?: RedisCatchupReport | { error: string };
    skipped?: string;
  };
  /**
   * Load each system that runs JavaScript got before the first round, unmeasured (ms; see
   * {@linkcode JIT_WARMUP_MS}).
   */
  warmupRunMs: number;
  /** The same for the two herds (see {@linkcode HERD_WARMUP_MS}); absent in older reports. */
  herdWarmupMs?: number;
  loadavgStart: number;
  loadavgEnd: number;
}

/**
 * The closed-loop load at 32 connections each Deno system (the Deno echoes and both herds) gets
 * before the first round, not measured: V8 compiles the hot paths after they ran a while, and five
 * `server` processes each warm their own isolate on a fifth of the work. Measured (procs12, one
 * herd of five processes alone, record log on, 1.5 s windows after 0.3 s, back to back): 6,161,
 * 8,231, then 10,215-13,424 req/s from the third window on, so the `--quick` plan (two 1.5 s
 * rounds) measured the five processes while they were still compiling.
 */
export const JIT_WARMUP_MS = { quick: 4000, full: 6000 } as const;

/**
 * The herds' warm-up instead (both, so neither is measured colder than the other): perf14 measured
 * five processes at 139 µs of CPU per IAMAT after 3 s of load, 30 of it V8's compiler threads
 * (40+ compilations per process in a 5 s window after 3 s), and 91 µs after 20 s
 * (BENCHMARKS.md, "Five processes of 2026-11-28"): a herd that serves for minutes runs the
 * latter. Redis and the C echo have nothing to compile.
 */
export const HERD_WARMUP_MS = { quick: 12_000, full: 20_000 } as const;

const TAG = () => randomHex(3);

/** The request line of each kind (loadgen.c placeholders). */
function lineFor(kind: Kind, tag: string): string {
  switch (kind) {
    case "echo":
    case "iamat":
      // One client per connection, a newer time each request: every IAMAT is a new record.
      return `IAMAT b{c}.${tag}.bench +34.068930-118.445127 {t}`;
    case "geoadd":
      // One member per connection moved each request (an unchanged score is not a write).
      return `GEOADD load {x} 34.068930 m{c}.${tag}.bench`;
  }
}

/** The compare part. */
export async function benchCompare(plan: Plan, logDir: string): Promise<CompareReport> {
  const loadavgStart = loadavg();
  let native = await ccAvailable();
  if (native) {
    try {
      await Promise.all([buildNative("loadgen"), buildNative("echo")]);
    } catch (e) {
      native = false;
      loudly(`cannot build the native tools (${(e as Error).message.split("\n")[0]})`);
    }
  } else {
    loudly(
      "no C compiler (`cc`): the Deno generator bench/load.ts stands in; its own ceiling " +
        "(~45k req/s on 2 cores) caps the floor and every ratio to it (apt-get install gcc)",
    );
  }
  const stops: (() => Promise<void>)[] = [];
  const dirs: HerdDir[] = [];
  const report: CompareReport = {
    generator: native ? "bench/loadgen.c" : "bench/load.ts (fallback: no cc)",
    connections: plan.halfPeakConnections,
    rounds: [],
    median32: {},
    ratios: {},
    points: [],
    halfPeak: {},
    redis: {},
    warmupRunMs: 0,
    loadavgStart,
    loadavgEnd: 0,
  };
  let redis: ReplicatedRedis | null = null;
  try {
    progress("[compare] starting echo servers, replicated Redis and both herds");
    const systems: System[] = [];
    const add = (key: SystemKey, kind: Kind, port: number, threads = 1) =>
      systems.push({ key, kind, port, threads });
    if (native) {
      const e = await startNativeEcho(`${logDir}/compare-c-echo.log`);
      stops.push(e.proc.stop);
      add("cEcho", "echo", e.port);
      add("cEcho2", "echo", e.port, 2);
    }
    const de = await startEcho(`${logDir}/compare-deno-echo.log`);
    stops.push(de.proc.stop);
    add("denoEcho", "echo", de.port);
    const da = await startEcho(`${logDir}/compare-deno-at.log`, "at");
    stops.push(da.proc.stop);
    add("denoAt", "iamat", da.port);
    if (!native) {
      report.redis.skipped = "no native generator for GEOADD";
      loudly("Redis GEOADD needs bench/loadgen.c: its load rows are SKIPPED");
    } else if (await ensureRedis()) {
      redis = await startReplicatedRedis(logDir);
      add("redis", "geoadd", redis.primary.port);
    } else report.redis.skipped = "redis-server missing";
    // Both herds with persistence (the record log) and logs on: the default deployment.
    const d1 = await makeHerdDir(24000);
    dirs.push(d1);
    const start = await launchStart(d1, `${logDir}/compare-start.log`, { persist: true });
    stops.push(start.stop);
    const d2 = await makeHerdDir(25000);
    dirs.push(d2);
    const servers = await Promise.all(
      HERD_NAMES.map((n) =>
        launchServer(d2, n, `${logDir}/compare-server-${n}.log`, { persist: true })
      ),
    );
    stops.push(async () => {
      await Promise.all(servers.map((s: Proc) => s.stop()));
    });
    for (const d of [d1, d2]) {
      if (!(await waitForHerdLinks(d, HERD_NAMES, 30_000))) throw new Error("herd links not up");
    }
    add("start", "iamat", d1.ports.Hill);
    add("servers", "iamat", d2.ports.Hill);

    const load = (s: System, connections: number, rate = 0): Promise<Point> =>
      loadPoint(plan, native, s, connections, rate);
    const c = plan.halfPeakConnections;
    const rounds = plan.quick ? 2 : 3;
    const warmupRunMs = plan.quick ? JIT_WARMUP_MS.quick : JIT_WARMUP_MS.full;
    const herdWarmupMs = plan.quick ? HERD_WARMUP_MS.quick : HERD_WARMUP_MS.full;
    for (
      const s of systems.filter((s) => s.key !== "cEcho" && s.key !== "cEcho2" && s.key !== "redis")
    ) {
      const ms = s.key === "start" || s.key === "servers" ? herdWarmupMs : warmupRunMs;
      progress(`[compare] warming up ${SYSTEMS[s.key]}: ${ms} ms at ${c} connections`);
      await loadPoint({ ...plan, durationMs: ms, warmupMs: 0 }, native, s, c, 0);
    }
    report.warmupRunMs = warmupRunMs;
    report.herdWarmupMs = herdWarmupMs;
    for (let i = 0; i < rounds; i++) {
      progress(`[compare] round ${i + 1}/${rounds}, ${c} connections: ${systems.length} systems`);
      const round: CompareRound = { points: {}, loadavg: loadavg() };
      for (const s of systems) round.points[s.key] = await load(s, c);
      report.rounds.push(round);
    }
    for (const s of systems) {
      const v = report.rounds.flatMap((r) => r.points[s.key] ? [r.points[s.key]!.throughput] : []);
      if (v.length > 0) report.median32[s.key] = median(v);
    }
    const ratio = (name: string, a: SystemKey, b: SystemKey) => {
      const per = report.rounds.flatMap((r) => {
        const pa = r.points[a], pb = r.points[b];
        return pa && pb && pb.throughput > 0 ? [pa.throughput / pb.throughput] : [];
      });
      if (per.length > 0) report.ratios[name] = { perRound: per, median: median(per) };
    };
    ratio("start/redis", "start", "redis");
    ratio("servers/redis", "servers", "redis");
    ratio("start/cEcho", "start", "cEcho");
    ratio("redis/cEcho", "redis", "cEcho");
    ratio("denoEcho/cEcho", "denoEcho", "cEcho");
    ratio("cEcho2/cEcho", "cEcho2", "cEcho");

    for (const n of plan.connections.filter((n) => n !== c)) {
      for (const s of systems.filter((s) => s.key !== "cEcho2")) {
        progress(`[compare] ${SYSTEMS[s.key]} x ${n} connections`);
        report.points.push(await load(s, n));
      }
    }
    for (const key of ["start", "servers"] as const) {
      const s = systems.find((x) => x.key === key)!;
      const peak = report.median32[key] ?? 0;
      if (peak <= 0) continue;
      progress(
        `[compare] ${SYSTEMS[key]} open loop at half of peak: ${Math.round(peak / 2)} req/s`,
      );
      report.halfPeak[key] = await load(s, c, peak / 2);
    }
    // The herds and echoes are done: free the CPUs and memory before Redis's memory figure.
    for (const stop of stops.splice(0).reverse()) await stop();
    if (redis) {
      const members = plan.memoryClients;
      progress(`[compare] Redis: ${members} members on five nodes, then a replica restarted empty`);
      try {
        report.redis.memory = await redisMemory(redis, members);
        report.redis.catchup = await redisCatchup(redis, logDir);
      } catch (e) {
        report.redis.memory ??= { error: (e as Error).message };
        report.redis.catchup ??= { error: (e as Error).message };
      }
    }
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await redis?.stop();
    for (const d of dirs) await d.remove();
  }
  report.loadavgEnd = loadavg();
  return report;
}

/** One load point through the native generator, or the Deno one when there is no cc. */
async function loadPoint(
  plan: Plan,
  native: boolean,
  s: System,
  connections: number,
  rate: number,
): Promise<Point> {
  const series = SYSTEMS[s.key];
  if (!native) {
    return (await measure(
      plan,
      series,
      s.port,
      s.kind === "echo" ? "echo" : "iamat",
      connections,
      rate,
    ))[0];
  }
  const r = await runLoadgen({
    port: s.port,
    connections,
    durationMs: plan.durationMs,
    warmupMs: plan.warmupMs,
    threads: s.threads,
    rate,
    line: lineFor(s.kind, TAG()),
  });
  return {
    series,
    mode: s.kind,
    connections,
    rate: Math.round(rate),
    requests: r.requests,
    throughput: r.throughput,
    p50: r.p50,
    p99: r.p99,
    p999: r.p999,
    sentP50: r.sentP50,
    sentP99: r.sentP99,
    max: r.max,
    errors: r.errors + r.closed,
    errorSamples: r.errorSample ? [r.errorSample] : [],
  };
}
