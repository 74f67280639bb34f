/**
 * Benchmark orchestrator (`deno task bench`). Every figure of issue 6, with its baselines
 * measured in the same run:
 *
 * - `echo`: the Deno runtime floor (bench/echo_server.ts) at 1, 32 and 256 connections, and open
 *   loop at half of its 32-connection peak;
 * - `asyncio`: the seed design (bench/asyncio_herd.py, five Python processes), and
 * - `herd`: our herd (`main.ts start`), each with IAMAT at 1/32/256 connections, open loop at half
 *   of the 32-connection peak, propagation Hill → farthest servers on an idle herd and while the
 *   half-peak load runs, inter-server messages per update, and convergence;
 * - `whatsat`: WHATSAT 50 km / 20 results in Los Angeles, offline index and fake Google on
 *   loopback, at 1 and 32 connections (bench/whatsat.ts);
 * - `sse`: 32-connection IAMAT with 0 and 100 dashboard event-stream readers (bench/sse.ts);
 * - `catchup`: a restarted server catching up on 1M missed records (bench/catchup.ts);
 * - `memory`: RSS of one process with 1M clients known to all five servers (bench/memory.ts);
 *   both in memory only (`--memory`, what the targets are judged on) and again with the Deno KV
 *   store (the default deployment) unless `--skip-persist`;
 * - `profile` (only on request): CPU profile under 32-connection IAMAT (bench/profile.ts).
 *
 *     deno run -A bench/run.ts [--quick] [--only echo,asyncio,herd,whatsat,sse,catchup,memory]
 *       [--skip-persist] [--gen-procs 2] [--out DIR]
 *
 * `--quick` (about 2 minutes) runs every part at a smaller scale: 1.5 s load windows, 100,000
 * records for memory and catch-up (not judged against the 1M targets). The full run takes about
 * 10-15 minutes. Both are bounded by a watchdog that kills every child and exits, and a part that
 * fails is recorded and skipped. Writes `<out>/latest.json`, `<out>/summary.md` (the tables
 * BENCHMARKS.md quotes) and `<out>/chart.svg` (out defaults to bench/results), and prints a table
 * and the targets. Children's output goes to `<out>/logs/`.
 *
 * Load comes from separate bench/load.ts processes (2 of them at 256 connections) so the generator
 * is not one single-threaded bottleneck; their histograms are merged here. On a small box the
 * generator shares the CPUs with the servers: compare series with each other, not with other boxes.
 * The 1-minute load average is recorded at the start and end of every part.
 *
 * The parts that need our herd are the functions under "HOOKS: our herd" below and
 * bench/herd_proc.ts.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Histogram } from "./hist.ts";
import { lineEnd, type LoadMode, whatsatEnd } from "./load.ts";
import { type ChartData, renderChart } from "./chart.ts";
import {
  type Convergence,
  decoder,
  encoder,
  type FloodStats,
  freePortBase,
  HERD_NAMES,
  herdConfig,
  killAll,
  killAllNow,
  type LastTimes,
  loadavg,
  loadStartAt,
  measure,
  mib,
  nowText,
  openClient,
  type Plan,
  type Point,
  type Proc,
  progress,
  r3,
  ROOT,
  sleep,
  startProcess,
  waitForPorts,
} from "./common.ts";
import { observerWatcher, randomHex, type Watcher } from "./observer.ts";
import { benchWhatsat, type WhatsatReport } from "./whatsat.ts";
import { benchSse, type SseReport } from "./sse.ts";
import { benchCatchup, type CatchupReport } from "./catchup.ts";
import { benchMemory, type MemoryReport } from "./memory.ts";
import { benchProfile, type ProfileReport } from "./profile.ts";

export type { Watcher } from "./observer.ts";
export { HERD_LINKS, HERD_NAMES, herdConfig, type Point } from "./common.ts";

// ---------------------------------------------------------------------------------------------
// Herds: what the bench needs from a running herd, whichever implementation it is.

/** Flooding counters summed over the herd, as returned by {@linkcode HerdHandle.counters}. */
export interface HerdCounters {
  /** Server-to-server messages received, summed over all servers. */
  peerMessages: number;
  /** Records accepted (stored as new) per server. */
  accepted: Record<string, number>;
  /** Flood sends that failed (e.g. connect errors), when the herd counts them. */
  floodErrors?: number;
}

/** A running herd, as the bench drives it. */
export interface HerdHandle {
  /** Series name in the table and chart. */
  label: string;
  /** Server name → port. */
  ports: Record<string, number>;
  /** Where the load and the propagation IAMATs go. */
  entry: string;
  /**
   * Where propagation is observed: the farthest server(s). Only these are polled, since every
   * poll costs the polled server CPU that the flood also needs (on 2 cores that shows).
   */
  observe: string[];
  /** Counters, or null when this herd cannot report them. */
  counters(): Promise<HerdCounters | null>;
  /**
   * Opens a way to see records arrive at `server`; the propagation measurement keeps one open per
   * observed server. How a herd is observed is its own business: WHATSAT polling for the asyncio
   * herd, an event stream for ours.
   */
  watch(server: string, only?: string): Promise<Watcher>;
  /** Short description of how `watch` observes, for the report. */
  watchMethod: string;
  stop(): Promise<void>;
}

/**
 * Observation by WHATSAT polling, back to back on one connection (one poll outstanding): works on
 * any herd, costs the polled server a WHATSAT per round trip, and resolves to within one round
 * trip. The stored AT line names the client's time once the record has arrived.
 */
async function whatsatWatcher(port: number): Promise<Watcher> {
  const conn = await openClient(port);
  return {
    async arrival(client, time, deadline) {
      const poll = encoder.encode(`WHATSAT ${client} 1 0\n`);
      while (performance.now() < deadline) {
        const reply = await conn.request(poll, whatsatEnd);
        const first = decoder.decode(reply.subarray(0, reply.indexOf(0x0a)));
        if (first.startsWith("AT ") && first.endsWith(` ${time}`)) return performance.now();
      }
      return null;
    },
    close: () => conn.close(),
  };
}

/** Waits until the counters stop moving (fire-and-forget floods may still be in flight). */
async function settledCounters(h: HerdHandle, maxMs: number): Promise<SettledCounters | null> {
  let last = await h.counters();
  if (!last) return null;
  const deadline = Date.now() + maxMs;
  while (Date.now() < deadline) {
    await sleep(250);
    const next = await h.counters();
    if (!next) return null;
    if (sameCounters(next, last)) return { ...next, settled: true };
    last = next;
  }
  return { ...last, settled: false };
}

/** Equal counters, whatever order the servers' entries were filled in. */
function sameCounters(a: HerdCounters, b: HerdCounters): boolean {
  const names = Object.keys({ ...a.accepted, ...b.accepted });
  return a.peerMessages === b.peerMessages && a.floodErrors === b.floodErrors &&
    names.every((n) => a.accepted[n] === b.accepted[n]);
}

/** Counters plus whether they had stopped moving (false: the herd was still flooding). */
type SettledCounters = HerdCounters & { settled: boolean };

function floodStats(
  h: HerdHandle,
  a: SettledCounters | null,
  b: SettledCounters | null,
): FloodStats | null {
  if (!a || !b) return null;
  const updates = b.accepted[h.entry] - a.accepted[h.entry];
  if (updates <= 0) return null;
  const r3 = (v: number) => Math.round(v * 1000) / 1000;
  return {
    updates,
    messagesPerUpdate: r3((b.peerMessages - a.peerMessages) / updates),
    settled: a.settled && b.settled,
    ...(b.floodErrors !== undefined ? { floodErrors: b.floodErrors - (a.floodErrors ?? 0) } : {}),
  };
}

/**
 * Propagation latency of marker IAMATs sent at the entry, until the last observed server (the
 * farthest) has applied the record. Two clocks: from when the marker was sent (the entry's own
 * handling included), and from when the entry's AT reply came back (the brief's "origin reply →
 * apply at the farthest server"; clamped at 0 on the rare sample that arrived first).
 */
export interface Propagation {
  /** How arrivals were observed (see {@linkcode HerdHandle.watchMethod}). */
  method: string;
  /** The observed servers (the farthest from the entry). */
  observed: string[];
  /** Background load while sampling: none (light load) or open loop at `rate` req/s. */
  load: { rate: number; connections: number } | null;
  samples: number;
  /** Samples that some observed server did not hold within 3 s. */
  lost: number;
  /** From sending the marker until the last observed server holds it. */
  allP50: number;
  allP99: number;
  /** From the entry's reply until the last observed server holds it. */
  fromReplyP50: number;
  fromReplyP99: number;
  /** Per observed server, from sending: p50 and p99. */
  perServer: Record<string, { p50: number; p99: number }>;
}

/**
 * Sends marker IAMATs at the entry one at a time (each waits for its reply and its arrivals,
 * then `gapMs`), `samples` of them or until `until` (performance.now()), and records when each
 * observed server applied it.
 */
async function samplePropagation(
  h: HerdHandle,
  o: { samples?: number; until?: number; gapMs: number; load: Propagation["load"] },
): Promise<Propagation> {
  const others = h.observe;
  const tag = `prop${Date.now() % 1e6}x`;
  const entry = await openClient(h.ports[h.entry]);
  const probes = await Promise.all(others.map((s) => h.watch(s, tag)));
  const all = new Histogram();
  const fromReply = new Histogram();
  const per = Object.fromEntries(others.map((s) => [s, new Histogram()]));
  let lost = 0;
  let samples = 0;
  try {
    for (let i = 0;; i++) {
      if (o.samples !== undefined && i >= o.samples) break;
      if (o.until !== undefined && performance.now() >= o.until) break;
      samples++;
      const client = `${tag}-${i}`;
      const time = nowText();
      const t0 = performance.now();
      const deadline = t0 + 3000;
      let tReply = NaN;
      const reply = entry.request(
        encoder.encode(`IAMAT ${client} +34.068930-118.445127 ${time}\n`),
        lineEnd,
      ).then(() => {
        tReply = performance.now();
      });
      const times = await Promise.all(others.map(async (s, k) => {
        const at = await probes[k].arrival(client, time, deadline);
        if (at === null) return NaN;
        per[s].record(at - t0);
        return at;
      }));
      await reply;
      if (times.some(Number.isNaN)) lost++;
      else {
        const last = Math.max(...times);
        all.record(last - t0);
        fromReply.record(Math.max(0, last - tReply));
      }
      await sleep(o.gapMs);
    }
  } finally {
    entry.close();
    for (const p of probes) p.close();
  }
  return {
    method: h.watchMethod,
    observed: others,
    load: o.load,
    samples,
    lost,
    allP50: r3(all.quantile(0.5)),
    allP99: r3(all.quantile(0.99)),
    fromReplyP50: r3(fromReply.quantile(0.5)),
    fromReplyP99: r3(fromReply.quantile(0.99)),
    perServer: Object.fromEntries(
      others.map((s) => [s, { p50: r3(per[s].quantile(0.5)), p99: r3(per[s].quantile(0.99)) }]),
    ),
  };
}

/** Propagation on an idle herd: `samples` markers, 5 ms apart. */
function measurePropagation(h: HerdHandle, samples: number): Promise<Propagation> {
  return samplePropagation(h, { samples, gapMs: 5, load: null });
}

/**
 * Propagation under load: open-loop IAMATs at `rate` req/s over the half-peak connections at the
 * entry (bench/load.ts, separate processes), and markers every `plan.markerGapMs` through the
 * measured window. Returns the markers' propagation and the load point itself (its latencies
 * include the cost of the observer streams).
 */
async function measurePropagationUnderLoad(
  plan: Plan,
  h: HerdHandle,
  rate: number,
): Promise<{ propagation: Propagation; point: Point }> {
  const startAt = loadStartAt();
  const load = measure(
    plan,
    `${h.label} (+markers)`,
    h.ports[h.entry],
    "iamat",
    plan.halfPeakConnections,
    rate,
    { startAt },
  );
  const from = performance.now() + (startAt - Date.now()) + plan.warmupMs;
  await sleep(Math.max(0, from - performance.now()));
  const propagation = await samplePropagation(h, {
    until: from + plan.durationMs,
    gapMs: plan.markerGapMs,
    load: { rate: Math.round(rate), connections: plan.halfPeakConnections },
  });
  const [point] = await load;
  return { propagation, point };
}

/** Everything measured for one herd. */
interface HerdReport {
  /** Entry server of the propagation samples (herds only). */
  entry?: string;
  points: Point[];
  halfPeak: Point | null;
  propagation: Propagation | null;
  /** Propagation sampled while open-loop load runs at half of the 32-connection peak. */
  propagationUnderLoad?: Propagation | null;
  /** The load point that ran with those samples (observer streams on). */
  halfPeakWithMarkers?: Point | null;
  /** Echo only: open loop at our herd's half-peak rate, the baseline for its half-peak p99. */
  atHerdRate?: Point | null;
  /** Our herd only: 32-connection points alternated with the echo floor's (see below). */
  interleaved?: Interleaved | null;
  loadavgStart?: number;
  loadavgEnd?: number;
}

/**
 * Waits (up to 15 s) until an IAMAT at the entry reaches every other server: ports open earlier
 * than peer links come up, and a herd still linking would make the first samples look slow.
 */
async function waitForLinks(h: HerdHandle): Promise<void> {
  const others = Object.keys(h.ports).filter((s) => s !== h.entry);
  const entry = await openClient(h.ports[h.entry]);
  const watchers = await Promise.all(others.map((s) => h.watch(s)));
  try {
    const until = performance.now() + 15000;
    for (let i = 0; performance.now() < until; i++) {
      const client = `ready${Date.now() % 1e6}-${i}`;
      const time = nowText();
      await entry.request(
        encoder.encode(`IAMAT ${client} +34.068930-118.445127 ${time}\n`),
        lineEnd,
      );
      const deadline = performance.now() + 1000;
      const got = await Promise.all(watchers.map((w) => w.arrival(client, time, deadline)));
      if (got.every((t) => t !== null)) return;
    }
    console.error(`[${h.label}] warning: links not all up after 15 s`);
  } finally {
    entry.close();
    for (const w of watchers) w.close();
  }
}

/**
 * Polls every server other than the entry with `WHATSAT <client> 1 0` for each load client until
 * its stored AT line carries the client's last acknowledged time, or `timeoutMs` passes.
 */
async function checkConvergence(
  h: HerdHandle,
  last: LastTimes,
  loadEnded: number,
  timeoutMs: number,
): Promise<Convergence> {
  const t0 = performance.now();
  const servers = Object.keys(h.ports).filter((s) => s !== h.entry);
  const clients = Object.keys(last);
  const pending = await Promise.all(servers.map(async (s) => {
    const conn = await openClient(h.ports[s]);
    let todo = clients;
    try {
      while (todo.length > 0) {
        const still: string[] = [];
        for (const client of todo) {
          const reply = await conn.request(encoder.encode(`WHATSAT ${client} 1 0\n`), whatsatEnd);
          const first = decoder.decode(reply.subarray(0, reply.indexOf(0x0a)));
          if (!(first.startsWith("AT ") && first.endsWith(` ${last[client]}`))) still.push(client);
        }
        todo = still;
        if (todo.length === 0 || performance.now() - t0 > timeoutMs) break;
        await sleep(100);
      }
    } finally {
      conn.close();
    }
    return todo.length;
  }));
  const pairs = clients.length * servers.length;
  const missing = pending.reduce((a, b) => a + b, 0);
  return {
    pairs,
    share: pairs === 0 ? 1 : Math.round(((pairs - missing) / pairs) * 1000) / 1000,
    ms: missing === 0 ? Math.round(performance.now() - loadEnded) : null,
  };
}

/** The common herd benchmark: propagation on an idle herd, IAMAT load points, half-peak. */
async function benchHerd(
  plan: Plan,
  h: HerdHandle,
  interleave?: () => Promise<Interleaved>,
): Promise<HerdReport> {
  const loadavgStart = loadavg();
  await waitForLinks(h);
  progress(`[${h.label}] propagation, ${plan.propagationSamples} samples`);
  const propagation = await measurePropagation(h, plan.propagationSamples);
  const points: Point[] = [];
  for (const c of plan.connections) {
    progress(`[${h.label}] IAMAT x ${c} connections`);
    const before = await settledCounters(h, plan.settleMs);
    const [p, last, loadEnded] = await measure(plan, h.label, h.ports[h.entry], "iamat", c);
    // Convergence first: waiting for the counters to settle would hide how long it takes.
    p.converged = await checkConvergence(h, last, loadEnded, 10000);
    p.flood = floodStats(h, before, await settledCounters(h, plan.settleMs));
    points.push(p);
  }
  // More 32-connection points (alternated with the echo floor) also steady the peak that the
  // half-peak rate is half of: one lucky point made "half of peak" 60% of the usual capacity.
  const interleaved = interleave ? await interleave() : null;
  const halfPeak = await measureHalfPeak(
    plan,
    h.label,
    h.ports[h.entry],
    "iamat",
    interleaved ? [...points, ...interleaved.herd] : points,
  );
  let propagationUnderLoad: Propagation | null = null;
  let halfPeakWithMarkers: Point | null = null;
  if (halfPeak) {
    progress(
      `[${h.label}] propagation under ${halfPeak.rate} req/s open loop, markers every ${plan.markerGapMs} ms`,
    );
    const r = await measurePropagationUnderLoad(plan, h, halfPeak.rate);
    propagationUnderLoad = r.propagation;
    halfPeakWithMarkers = r.point;
  }
  return {
    entry: h.entry,
    points,
    interleaved,
    halfPeak,
    propagation,
    propagationUnderLoad,
    halfPeakWithMarkers,
    loadavgStart,
    loadavgEnd: loadavg(),
  };
}

/**
 * The closed-loop throughput "peak" that half-peak runs take half of: at the half-peak
 * connection count (32), as the issue defines it, the median of the closed-loop points there
 * (one, or several with the interleaved rounds); the best point when there is none.
 */
function peakOf(plan: Plan, points: Point[]): number {
  const at = points.filter((p) => p.connections === plan.halfPeakConnections && p.rate === 0);
  if (at.length === 0) return Math.max(0, ...points.map((p) => p.throughput));
  return median(at.map((p) => p.throughput));
}

/** The middle value (the mean of the two middle ones for an even count). */
function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Open loop at half the 32-connection closed-loop throughput, over 32 connections: latency at a
 * load the server can carry.
 */
async function measureHalfPeak(
  plan: Plan,
  series: string,
  port: number,
  mode: LoadMode,
  points: Point[],
): Promise<Point | null> {
  const peak = peakOf(plan, points);
  if (peak <= 0) return null;
  progress(`[${series}] half of peak: ${Math.round(peak / 2)} req/s open loop`);
  return (await measure(plan, series, port, mode, plan.halfPeakConnections, peak / 2))[0];
}

/**
 * The throughput ratio, measured so the machine's drift cancels: on this shared VM the same
 * server's throughput moves by a third within minutes, and the echo part runs minutes before the
 * herd part. So the echo floor and our herd (both running, only one loaded at a time) alternate
 * at 32 connections: echo, herd, echo, ..., echo. Each herd point is compared with the mean of the
 * echo points either side; the median of those ratios is the figure.
 */
interface Interleaved {
  connections: number;
  echo: Point[];
  herd: Point[];
  ratios: number[];
  median: number;
}

async function measureInterleaved(
  plan: Plan,
  logDir: string,
  h: HerdHandle,
  rounds: number,
): Promise<Interleaved> {
  const { proc, port } = await startEcho(`${logDir}/echo-interleaved.log`);
  try {
    const c = plan.halfPeakConnections;
    const echo: Point[] = [];
    const herd: Point[] = [];
    for (let i = 0; i < rounds; i++) {
      progress(`[interleaved] round ${i + 1}/${rounds}: echo, then our herd, ${c} connections`);
      echo.push((await measure(plan, "echo baseline", port, "echo", c))[0]);
      herd.push((await measure(plan, h.label, h.ports[h.entry], "iamat", c))[0]);
    }
    echo.push((await measure(plan, "echo baseline", port, "echo", c))[0]);
    const ratios = herd.map((p, i) =>
      p.throughput / ((echo[i].throughput + echo[i + 1].throughput) / 2)
    );
    return { connections: c, echo, herd, ratios, median: median(ratios) };
  } finally {
    await proc.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Echo baseline.

/** Starts bench/echo_server.ts on a free port, logging to `log`. */
async function startEcho(log: string): Promise<{ proc: Proc; port: number }> {
  const proc = await startProcess(
    Deno.execPath(),
    ["run", "-A", "bench/echo_server.ts", "--port", "0"],
    log,
    { ready: /^READY \d+/ },
  );
  return { proc, port: Number(proc.readyLine.split(" ")[1]) };
}

/** The echo floor at a given open-loop rate over the half-peak connections. */
async function echoAtRate(plan: Plan, logDir: string, rate: number): Promise<Point> {
  const { proc, port } = await startEcho(`${logDir}/echo-at-rate.log`);
  try {
    progress(`[echo baseline] at our herd's half-peak rate: ${Math.round(rate)} req/s open loop`);
    return (await measure(plan, "echo baseline", port, "echo", plan.halfPeakConnections, rate))[0];
  } finally {
    await proc.stop();
  }
}

async function benchEcho(plan: Plan, logDir: string): Promise<HerdReport> {
  const { proc, port } = await startEcho(`${logDir}/echo.log`);
  try {
    const points: Point[] = [];
    for (const c of plan.connections) {
      progress(`[echo baseline] echo x ${c} connections`);
      points.push((await measure(plan, "echo baseline", port, "echo", c))[0]);
    }
    const halfPeak = await measureHalfPeak(plan, "echo baseline", port, "echo", points);
    return { points, halfPeak, propagation: null };
  } finally {
    await proc.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Asyncio seed herd (bench/asyncio_herd.py): five python processes.

async function startAsyncioHerd(logDir: string, python: string): Promise<HerdHandle> {
  const base = freePortBase(5, 22000);
  const ports = Object.fromEntries(HERD_NAMES.map((n, i) => [n, base + i]));
  const starts = HERD_NAMES.map((name) =>
    startProcess(
      python,
      ["bench/asyncio_herd.py", name, "--port-base", String(base)],
      `${logDir}/asyncio-${name}.log`,
      { ready: /^READY / },
    )
  );
  const settled = await Promise.allSettled(starts);
  const procs = settled.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
  const failed = settled.find((r) => r.status === "rejected");
  if (failed) {
    await Promise.all(procs.map((p) => p.stop()));
    throw (failed as PromiseRejectedResult).reason;
  }
  /** Its STATS command (a baseline-only extra): one JSON line of counters per server. */
  const counters = async (): Promise<HerdCounters> => {
    const out: HerdCounters = { peerMessages: 0, accepted: {}, floodErrors: 0 };
    await Promise.all(HERD_NAMES.map(async (name) => {
      const c = await openClient(ports[name]);
      try {
        const line = decoder.decode(
          await c.request(encoder.encode("STATS\n"), lineEnd),
        );
        const s = JSON.parse(line.slice(line.indexOf("{")));
        out.peerMessages += s.peer_msgs;
        out.accepted[name] = s.accepted;
        out.floodErrors! += s.flood_errors;
      } finally {
        c.close();
      }
    }));
    return out;
  };
  return {
    label: "asyncio herd",
    ports,
    entry: "Hill",
    observe: ["Singleton"],
    counters,
    watch: (server) => whatsatWatcher(ports[server]),
    watchMethod: "WHATSAT polling",
    stop: async () => {
      await Promise.all(procs.map((p) => p.stop()));
    },
  };
}

// =============================================================================================
// HOOKS: our herd. Everything the bench needs from main.ts is here; the rest is shared.
// =============================================================================================

/**
 * HOOK 1 (start): `deno run -A main.ts start --config F --log-dir D --data-dir D --no-dashboard
 * --places offline` on a free port block with the default topology, with a HERD_SECRET the bench
 * knows (for HOOK 4), and waits for all five ports. Null (series skipped) while main.ts is absent
 * or does not come up. The offline Places provider keeps WHATSAT on the box and free.
 */
async function startOurHerd(logDir: string): Promise<HerdHandle | null> {
  try {
    await Deno.stat(`${ROOT}main.ts`);
  } catch {
    console.error("[our herd] main.ts not there yet: skipped");
    return null;
  }
  const base = freePortBase(5, 32000);
  const work = await Deno.makeTempDir({ prefix: "herd-bench-" });
  const config = `${work}/herd.json`;
  await Deno.writeTextFile(config, JSON.stringify(herdConfig(base)));
  await Deno.mkdir(`${work}/logs`);
  await Deno.mkdir(`${work}/data`);
  const ports = Object.fromEntries(HERD_NAMES.map((n, i) => [n, base + i]));
  const secret = randomHex(32);
  let proc: Proc;
  try {
    proc = await startProcess(
      Deno.execPath(),
      [
        "run",
        "-A",
        "main.ts",
        "start",
        "--config",
        config,
        "--log-dir",
        `${work}/logs`,
        "--data-dir",
        `${work}/data`,
        ...OUR_HERD_FLAGS,
      ],
      `${logDir}/our-herd.log`,
      { env: { HERD_SECRET: secret } },
    );
  } catch (e) {
    await Deno.remove(work, { recursive: true }).catch(() => {});
    throw e;
  }
  const cleanup = async () => {
    await proc.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  };
  if (!(await waitForPorts(Object.values(ports), 30000))) {
    await cleanup();
    console.error(`[our herd] did not open ports ${base}..${base + 4}: skipped (see logs)`);
    return null;
  }
  const logs = new LogCounts(`${work}/logs`);
  const handle: HerdHandle = {
    label: "our herd",
    ports,
    entry: "Hill",
    // Both servers two hops from Hill: the observer stream is cheap enough to watch both.
    observe: ["Singleton", "Campbell"],
    counters: () => logs.read(),
    watchMethod: "observer event stream (HERD2 observer handshake)",
    watch: async (server, only) => {
      try {
        return await observerWatcher(ports[server], server, secret, only);
      } catch (e) {
        console.error(`[our herd] observer refused (${(e as Error).message}): WHATSAT polling`);
        handle.watchMethod = "WHATSAT polling (observer refused)";
        return await whatsatWatcher(ports[server]);
      }
    },
    stop: cleanup,
  };
  return handle;
}

/** HOOK 2 (flags): extra flags for `main.ts start`. */
const OUR_HERD_FLAGS = ["--no-dashboard", "--places", "offline"];

/**
 * HOOK 3 (counters): counts, in `<log-dir>/<Server>.log`, the records of the `RECV from X
 * <n> record(s)` lines (one line per batch received over a peer link) and the `ACCEPT` lines
 * (records stored). Reads each
 * file incrementally from where it stopped, so the large IAMAT logs are read once. Tied to the
 * line format of servers/log.ts: `<ISO time> <KIND> <details>`.
 */
class LogCounts {
  #offsets = new Map<string, number>();
  #tails = new Map<string, string>();
  #recv = 0;
  #accepted: Record<string, number> = Object.fromEntries(HERD_NAMES.map((n) => [n, 0]));
  #buf = new Uint8Array(1 << 20);
  constructor(readonly dir: string) {}

  async read(): Promise<HerdCounters> {
    for (const name of HERD_NAMES) {
      let file: Deno.FsFile;
      try {
        file = await Deno.open(`${this.dir}/${name}.log`);
      } catch {
        continue; // not written yet
      }
      try {
        let offset = this.#offsets.get(name) ?? 0;
        await file.seek(offset, Deno.SeekMode.Start);
        let tail = this.#tails.get(name) ?? "";
        while (true) {
          const n = await file.read(this.#buf);
          if (n === null) break;
          offset += n;
          const lines = (tail + decoder.decode(this.#buf.subarray(0, n))).split("\n");
          tail = lines.pop()!;
          for (const line of lines) {
            const recv = /^\S+ RECV from \S+ (\d+) record/.exec(line);
            if (recv !== null) this.#recv += Number(recv[1]);
            else if (/^\S+ ACCEPT /.test(line)) this.#accepted[name]++;
          }
        }
        this.#offsets.set(name, offset);
        this.#tails.set(name, tail);
      } finally {
        file.close();
      }
    }
    return { peerMessages: this.#recv, accepted: { ...this.#accepted } };
  }
}

/**
 * HOOK 4 (observation): an authenticated observer stream (servers/observe.ts) on a server; a
 * record has arrived when its `location.accepted` EVENT line is read. See bench/observer.ts.
 */

// =============================================================================================

function planFor(quick: boolean, genProcs: number): Plan {
  return quick
    ? {
      quick,
      warmupMs: 300,
      durationMs: 1500,
      connections: [1, 32, 256],
      halfPeakConnections: 32,
      propagationSamples: 20,
      settleMs: 10_000,
      genProcs,
      watchdogMs: 600_000,
      markerGapMs: 10,
      whatsatConnections: [1, 32],
      memoryClients: 100_000,
      catchupRecords: 100_000,
      sseSubscribers: 100,
    }
    : {
      quick,
      warmupMs: 2000,
      durationMs: 8000,
      connections: [1, 32, 256],
      halfPeakConnections: 32,
      propagationSamples: 200,
      settleMs: 30_000,
      genProcs,
      watchdogMs: 1_800_000,
      markerGapMs: 20,
      whatsatConnections: [1, 32],
      memoryClients: 1_000_000,
      catchupRecords: 1_000_000,
      sseSubscribers: 100,
    };
}

function printTable(points: Point[]): void {
  const rows = [
    [
      "series",
      "mode",
      "conns",
      "rate",
      "req/s",
      "p50 ms",
      "p99 ms",
      "max ms",
      "errors",
      "msgs/upd",
    ],
    ...points.map((p) => [
      p.series,
      p.mode,
      String(p.connections),
      p.rate ? String(p.rate) : "closed",
      String(p.throughput),
      p.p50.toFixed(3),
      p.p99.toFixed(3),
      p.max.toFixed(1),
      String(p.errors),
      p.flood ? `${p.flood.messagesPerUpdate}` : "",
    ]),
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) console.log(r.map((c, i) => c.padStart(widths[i])).join("  "));
}

// ---------------------------------------------------------------------------------------------
// Targets (issue 6) and the markdown summary that BENCHMARKS.md is written from.

/** One target of issue 6: met, not met, or null when this run cannot judge it. */
export interface Target {
  name: string;
  target: string;
  measured: string;
  met: boolean | null;
}

/** Everything a run writes to latest.json. */
export interface RunResult {
  meta: Record<string, unknown> & { quick: boolean };
  reports: Record<string, HerdReport>;
  whatsat?: WhatsatReport | { error: string };
  sse?: SseReport | { error: string };
  catchup?: CatchupReport[] | { error: string };
  memory?: MemoryReport[] | { error: string };
  profile?: ProfileReport | { error: string };
  targets: Target[];
  chart: ChartData;
}

const ok = <T extends object>(v: T | { error: string } | undefined): T | undefined =>
  v !== undefined && !("error" in v) ? v as T : undefined;

const GiB = 1024 ** 3;

function judgeTargets(r: RunResult): Target[] {
  const t: Target[] = [];
  const echo = r.reports["echo baseline"];
  const ours = r.reports["our herd"];
  const at = (rep: HerdReport | undefined, c: number) =>
    rep?.points.find((p) => p.connections === c);
  const e32 = at(echo, 32);
  const o32 = at(ours, 32);
  const il = ours?.interleaved;
  const single = e32 && o32
    ? `${pct(o32.throughput / e32.throughput)} (${o32.throughput} vs ${e32.throughput} req/s)`
    : undefined;
  t.push({
    name: "IAMAT throughput at 32 connections",
    target: "≥ 50% of the echo floor",
    measured: il
      ? `${pct(il.median)}: median of ${il.ratios.length} interleaved rounds (${
        il.ratios.map(pct).join(", ")
      }; herd ${il.herd.map((p) => fmtInt(p.throughput)).join(", ")} req/s, echo ${
        il.echo.map((p) => fmtInt(p.throughput)).join(", ")
      })` + (single ? `; the main table's single points: ${single}` : "")
      : single ?? "not measured",
    met: il ? il.median >= 0.5 : e32 && o32 ? o32.throughput >= 0.5 * e32.throughput : null,
  });
  const hp = ours?.halfPeak;
  t.push({
    name: "IAMAT p99 at half of peak",
    target: "≤ 5 ms",
    measured: hp
      ? `${hp.p99} ms at ${hp.rate} req/s open loop (p50 ${hp.p50} ms)` +
        (echo?.atHerdRate ? `; the echo floor at that rate: p99 ${echo.atHerdRate.p99} ms` : "")
      : "not measured",
    met: hp ? hp.p99 <= 5 : null,
  });
  const pl = ours?.propagation;
  t.push({
    name: "Propagation p99, light load",
    target: "≤ 5 ms",
    measured: pl
      ? `${pl.fromReplyP99} ms from the AT reply (${pl.allP99} ms from sending the IAMAT)`
      : "not measured",
    met: pl ? pl.fromReplyP99 <= 5 : null,
  });
  const pu = ours?.propagationUnderLoad;
  t.push({
    name: "Propagation p99 at half of peak",
    target: "≤ 50 ms",
    measured: pu
      ? `${pu.fromReplyP99} ms from the AT reply (${pu.allP99} ms from sending) at ${pu.load?.rate} req/s`
      : "not measured",
    met: pu ? pu.fromReplyP99 <= 50 && pu.lost === 0 : null,
  });
  const mpu = (ours?.points ?? []).flatMap((p) => p.flood ? [p.flood.messagesPerUpdate] : []);
  t.push({
    name: "Inter-server messages per update",
    target: "≤ 8",
    measured: mpu.length > 0 ? `${Math.max(...mpu)} (worst load point)` : "not measured",
    met: mpu.length > 0 ? Math.max(...mpu) <= 8 : null,
  });
  const mem = ok(r.memory)?.find((m) => !m.persistence);
  t.push({
    name: "RSS, 1M clients × 5 servers in one process",
    target: "≤ 2.5 GiB",
    measured: mem
      ? `${(mem.rssAfter / GiB).toFixed(2)} GiB with ${fmtInt(mem.clients)} clients` +
        (mem.clients < 1_000_000 ? " (quick scale)" : "")
      : "not measured",
    met: mem && mem.clients >= 1_000_000 && mem.complete ? mem.rssAfter <= 2.5 * GiB : null,
  });
  const cu = ok(r.catchup)?.find((c) => !c.persistence);
  t.push({
    name: "Catch-up of 1M missed records",
    target: "≤ 10 s",
    measured: cu
      ? (cu.totalMs === null
        ? `not caught up (held ${cu.held} of ${cu.target})`
        : `${(cu.totalMs / 1000).toFixed(1)} s from restart (${
          (cu.startupMs / 1000).toFixed(1)
        } s start-up + ${((cu.catchupMs ?? 0) / 1000).toFixed(1)} s catch-up) for ${
          fmtInt(cu.records)
        } records`) +
        (cu.records < 1_000_000 ? " (quick scale)" : "")
      : "not measured",
    met: cu && cu.records >= 1_000_000 ? cu.totalMs !== null && cu.totalMs <= 10_000 : null,
  });
  const sse = ok(r.sse);
  t.push({
    name: "Cost of 100 dashboard SSE subscribers",
    target: "≤ 20% of IAMAT throughput",
    measured: sse
      ? `${sse.dropPercent}% drop (${sse.with.throughput} vs ${
        Math.round(sse.without.reduce((a, p) => a + p.throughput, 0) / sse.without.length)
      } req/s)`
      : "not measured",
    met: sse ? sse.dropPercent <= 20 : null,
  });
  return t;
}

function pct(v: number): string {
  return `${Math.round(v * 1000) / 10}%`;
}

function fmtInt(n: number): string {
  return n.toLocaleString("en-US");
}

function ms(v: number | null | undefined): string {
  return v === null || v === undefined || Number.isNaN(v) ? "—" : v.toFixed(v < 10 ? 2 : 1);
}

/**
 * The code measured: HEAD's commit, and the files outside bench/ that differed from it when the
 * run started (other people edit the tree while benches run).
 */
async function codeState(): Promise<{ commit: string; dirty: string[] }> {
  const git = async (...args: string[]) => {
    try {
      const out = await new Deno.Command("git", { args, cwd: ROOT, stderr: "null" }).output();
      return new TextDecoder().decode(out.stdout).trimEnd();
    } catch {
      return "";
    }
  };
  const commit = await git("log", "-1", "--format=%h %ci %s");
  const dirty = (await git("status", "--porcelain")).split("\n").map((l) => l.slice(3))
    .filter((f) => f && !f.startsWith("bench/"));
  return { commit, dirty };
}

/** The machine, for the report: CPUs, CPU model, memory, kernel, Deno, Python. */
async function machine(python: string): Promise<Record<string, string | number>> {
  const read = (f: string) => {
    try {
      return Deno.readTextFileSync(f);
    } catch {
      return "";
    }
  };
  const cpuModel = /model name\s*:\s*(.*)/.exec(read("/proc/cpuinfo"))?.[1]?.trim() ?? "?";
  const memKb = Number(/MemTotal:\s+(\d+)/.exec(read("/proc/meminfo"))?.[1] ?? 0);
  let py = "?";
  try {
    const out = await new Deno.Command(python, { args: ["--version"] }).output();
    py = new TextDecoder().decode(out.stdout.length ? out.stdout : out.stderr).trim();
  } catch { /* no python */ }
  return {
    cpus: navigator.hardwareConcurrency,
    cpuModel,
    memoryGiB: Math.round((memKb / 1024 / 1024) * 10) / 10,
    kernel: read("/proc/sys/kernel/osrelease").trim(),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    python: py,
  };
}

function mdTable(head: string[], rows: (string | number)[][]): string {
  return [
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

/** The run as markdown tables: what BENCHMARKS.md quotes. */
function summaryMarkdown(r: RunResult): string {
  const out: string[] = [];
  const m = r.meta as Record<string, unknown>;
  const mc = m.machine as Record<string, unknown>;
  out.push(
    `# Bench run ${m.date}${r.meta.quick ? " (quick)" : ""}`,
    "",
    `Machine: ${mc.cpus} CPUs (${mc.cpuModel}), ${mc.memoryGiB} GiB, Linux ${mc.kernel}; ` +
      `Deno ${mc.deno} (V8 ${mc.v8}); ${mc.python}. Command: \`${m.command}\`. ` +
      `Took ${m.elapsedS} s. 1-min load average ${m.loadavgAtStart} at start, ${m.loadavgAtEnd} at end.`,
    "",
  );
  const c0 = m.codeAtStart as { commit: string; dirty: string[] } | undefined;
  const c1 = m.codeAtEnd as { commit: string; dirty: string[] } | undefined;
  if (c0) {
    out.push(
      `Code: ${c0.commit}` + (c0.dirty.length ? ` (uncommitted: ${c0.dirty.join(", ")})` : "") +
        (c1 && c1.commit !== c0.commit ? `; **HEAD moved during the run to ${c1.commit}**` : "") +
        ".",
      "",
    );
  }
  const echo = r.reports["echo baseline"];
  const asy = r.reports["asyncio herd"];
  const ours = r.reports["our herd"];
  const find = (rep: HerdReport | undefined, c: number, open = false) =>
    open ? rep?.halfPeak ?? undefined : rep?.points.find((p) => p.connections === c);
  const rows: (string | number)[][] = [];
  for (const [name, rep] of Object.entries(r.reports)) {
    const extra = [rep.halfPeak, rep.atHerdRate].filter((p): p is Point => !!p);
    for (const p of [...rep.points, ...extra]) {
      const open = p.rate > 0;
      // An open-loop row's p99 baseline: the echo floor at the same rate when measured.
      const e = open && echo?.atHerdRate?.rate === p.rate
        ? echo.atHerdRate
        : find(echo, p.connections, open);
      const a = find(asy, p.connections, open);
      rows.push([
        name,
        open ? `open ${p.rate}/s` : "closed",
        p.connections,
        fmtInt(p.throughput),
        // Open-loop rows run at a set rate (half of each one's own peak): no throughput ratio.
        name !== "echo baseline" && e && !open ? pct(p.throughput / e.throughput) : "",
        name === "our herd" && a && !open ? `${(p.throughput / a.throughput).toFixed(1)}×` : "",
        ms(p.p50),
        ms(p.p99),
        name !== "echo baseline" && e ? `${(p.p99 / e.p99).toFixed(1)}×` : "",
        p.errors,
        p.flood ? String(p.flood.messagesPerUpdate) : "",
      ]);
    }
  }
  out.push(
    "## IAMAT load (Hill), echo floor and asyncio seed herd",
    "",
    mdTable(
      [
        "series",
        "loop",
        "conns",
        "req/s",
        "vs echo",
        "vs asyncio",
        "p50 ms",
        "p99 ms",
        "p99 vs echo",
        "errors",
        "msgs/update",
      ],
      rows,
    ),
    "",
  );
  const il = r.reports["our herd"]?.interleaved;
  if (il) {
    out.push(
      `### Interleaved rounds, ${il.connections} connections (the throughput target's figure)`,
      "",
      "The echo floor and our herd alternate (echo, herd, echo, ...); each herd point is divided by",
      "the mean of the echo points either side of it, so drift of the machine between parts cancels.",
      "",
      mdTable(
        ["round", "echo before", "our herd", "echo after", "ratio"],
        il.herd.map((p, i) => [
          i + 1,
          fmtInt(il.echo[i].throughput),
          fmtInt(p.throughput),
          fmtInt(il.echo[i + 1].throughput),
          pct(il.ratios[i]),
        ]),
      ),
      "",
      `Median ratio: **${pct(il.median)}**.`,
      "",
    );
  }
  const prow: (string | number)[][] = [];
  for (const [name, rep] of Object.entries(r.reports)) {
    for (const p of [rep.propagation, rep.propagationUnderLoad]) {
      if (!p) continue;
      const base = p.load ? asy?.propagationUnderLoad : asy?.propagation;
      prow.push([
        name,
        p.load ? `open loop ${p.load.rate}/s × ${p.load.connections}` : "idle",
        p.observed.join("+"),
        p.method,
        `${p.samples} (${p.lost} lost)`,
        ms(p.fromReplyP50),
        ms(p.fromReplyP99),
        ms(p.allP50),
        ms(p.allP99),
        name === "our herd" && base ? `${(p.allP99 / base.allP99).toFixed(2)}×` : "",
      ]);
    }
  }
  if (prow.length > 0) {
    out.push(
      "## Propagation Hill → farthest servers (2 hops)",
      "",
      mdTable(
        [
          "herd",
          "load",
          "observed",
          "how",
          "samples",
          "reply→apply p50",
          "reply→apply p99",
          "send→apply p50",
          "send→apply p99",
          "p99 vs asyncio",
        ],
        prow,
      ),
      "",
    );
  }
  const hw = ours?.halfPeakWithMarkers;
  if (hw) {
    out.push(
      `Load point run with the markers (observer streams on): ${fmtInt(hw.throughput)} req/s, ` +
        `p50 ${ms(hw.p50)} ms, p99 ${ms(hw.p99)} ms, ${hw.errors} errors.`,
      "",
    );
  }
  const conv = ours?.points.map((p) =>
    p.converged
      ? `${p.connections} conns: ${p.converged.ms === null ? "NOT" : `${p.converged.ms} ms`}`
      : ""
  ).filter(Boolean);
  if (conv?.length) out.push(`Convergence after each closed-loop point: ${conv.join(", ")}.`, "");

  const wh = ok(r.whatsat);
  if (wh) {
    out.push(
      `## WHATSAT (radius ${wh.radiusKm} km, bound ${wh.bound}, clients around ${wh.location})`,
      "",
      mdTable(
        ["provider", "conns", "req/s", "p50 ms", "p99 ms", "errors", "probe reply", "upstream"],
        wh.series.flatMap((s) =>
          s.points.map((p) => [
            s.provider,
            p.connections,
            fmtInt(p.throughput),
            ms(p.p50),
            ms(p.p99),
            p.errors,
            s.probe ? `${s.probe.status}, ${s.probe.results} results, ${s.probe.bytes} B` : "?",
            s.upstream ? `${fmtInt(s.upstream.requests)} requests` : "",
          ])
        ),
      ),
      "",
    );
  } else if (r.whatsat) out.push(`WHATSAT: error ${(r.whatsat as { error: string }).error}`, "");

  const mems = ok(r.memory);
  if (mems) {
    out.push(
      "## Memory: one `main.ts start` process, every client known to all five servers",
      "",
      mdTable(
        [
          "records kept",
          "clients",
          "RSS before",
          "RSS after",
          "peak RSS",
          "RSS after forced GC",
          "JS heap after GC",
          "bytes/record (RSS)",
          "bytes/record (heap)",
          "load + flood",
          "complete",
        ],
        mems.map((x) => [
          x.persistence ? "memory + Deno KV" : "memory only",
          fmtInt(x.clients),
          `${mib(x.rssBefore)} MiB`,
          `${mib(x.rssAfter)} MiB`,
          `${mib(x.rssPeak)} MiB`,
          `${mib(x.rssAfterGc)} MiB`,
          `${mib(x.heapAfterGc)} MiB`,
          x.bytesPerRecordRss,
          x.bytesPerRecordHeap,
          `${(x.load.ms / 1000).toFixed(1)} s + ${(x.floodMs / 1000).toFixed(1)} s`,
          x.complete ? "yes" : `NO ${JSON.stringify(x.counts)}`,
        ]),
      ),
      "",
    );
  } else if (r.memory) out.push(`Memory: error ${(r.memory as { error: string }).error}`, "");

  const cus = ok(r.catchup);
  if (cus) {
    out.push(
      "## Catch-up: Campbell restarted after missing every record (five `server` processes)",
      "",
      mdTable(
        [
          "records kept",
          "missed",
          "restart → all held",
          "start-up",
          "catch-up",
          "both SYNCs done",
          "RSS of one server",
        ],
        cus.map((c) => [
          c.persistence ? "memory + Deno KV" : "memory only",
          fmtInt(c.target),
          c.totalMs === null ? `NOT (held ${c.held})` : `${(c.totalMs / 1000).toFixed(2)} s`,
          `${(c.startupMs / 1000).toFixed(2)} s`,
          c.catchupMs === null ? "—" : `${(c.catchupMs / 1000).toFixed(2)} s`,
          c.syncDoneMs === null ? "—" : `${(c.syncDoneMs / 1000).toFixed(2)} s`,
          c.rssOther === null ? "?" : `${mib(c.rssOther)} MiB`,
        ]),
      ),
      "",
      ...cus.map((c) =>
        `Restarted ${c.victim}'s link events (${
          c.persistence ? "memory + Deno KV" : "memory only"
        }): ${(c.linkEvents ?? c.syncLines).join("; ")}.`
      ),
      "",
    );
  } else if (r.catchup) out.push(`Catch-up: error ${(r.catchup as { error: string }).error}`, "");

  const sse = ok(r.sse);
  if (sse) {
    const off = find(ours, 32);
    const base = sse.without.reduce((a, p) => a + p.throughput, 0) / sse.without.length;
    out.push(
      `## Dashboard SSE subscribers (32-connection IAMAT at Hill)`,
      "",
      mdTable(
        ["herd", "req/s", "vs dashboard on, 0 readers (mean)", "p50 ms", "p99 ms", "errors"],
        [
          ...(off ? [{ ...off, series: "dashboard off (the `herd` part above)" }] : []),
          ...sse.without.slice(0, 1),
          sse.with,
          ...sse.without.slice(1),
        ].map((p) => [
          p.series,
          fmtInt(p.throughput),
          pct(p.throughput / base),
          ms(p.p50),
          ms(p.p99),
          p.errors,
        ]),
      ),
      "",
      sse.readers
        ? `Readers got ${mib(sse.readers.bytes)} MiB in ${sse.readers.messages} messages over ` +
          `${sse.readers.seconds} s (per reader ${mib(sse.readers.minBytes)}–${
            mib(sse.readers.maxBytes)
          } MiB), ${sse.readers.errors} errors; hub: ${JSON.stringify(sse.hub)}.`
        : "",
      "",
    );
  } else if (r.sse) out.push(`SSE: error ${(r.sse as { error: string }).error}`, "");

  out.push(
    "## Targets",
    "",
    mdTable(
      ["target", "wanted", "measured", "status"],
      r.targets.map((t) => [
        t.name,
        t.target,
        t.measured,
        t.met === null ? "not judged" : t.met ? "met" : "**not met**",
      ]),
    ),
    "",
  );
  for (const c of ok(r.profile)?.cases ?? []) {
    out.push(
      `## CPU profile, ${c.name}, 32-connection IAMAT (${
        fmtInt(c.point.throughput)
      } req/s while sampled, ${c.totalMs} ms sampled)`,
      "",
      mdTable(
        ["function", "where", "self ms", "share"],
        c.top.map((f) => [f.functionName, f.where || "(native)", f.ms, pct(f.share)]),
      ),
      "",
    );
  }
  return out.join("\n");
}

// ---------------------------------------------------------------------------------------------

const SECTIONS = ["echo", "asyncio", "herd", "whatsat", "sse", "catchup", "memory"];

const BENCH_USAGE = `Usage: deno task bench [options]
  --quick            shorter runs (about 2 minutes instead of 10)
  --only PARTS       comma-separated parts (default ${SECTIONS.join(",")}; also: profile)
  --gen-procs N      load generator processes (default 2)
  --out DIR          results folder (default bench/results)
  --python PATH      Python for the asyncio baseline (default python3)
  --skip-persist     skip the persistence variants
  -h, --help         show this help`;

function benchArgs() {
  try {
    return parseArgs({
      args: Deno.args,
      options: {
        quick: { type: "boolean", default: false },
        only: { type: "string", default: SECTIONS.join(",") },
        "gen-procs": { type: "string", default: "2" },
        out: { type: "string", default: `${ROOT}bench/results` },
        python: { type: "string", default: "python3" },
        "skip-persist": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (err) {
    // One line, exit 2, like main.ts: parseArgs' first sentence says what is wrong.
    console.error(`error: ${String((err as Error).message).split(". ")[0]}`);
    Deno.exit(2);
  }
}

async function main(): Promise<void> {
  const { values: v } = benchArgs();
  if (v.help) {
    console.log(BENCH_USAGE);
    return;
  }
  const plan = planFor(v.quick, Math.max(1, Number(v["gen-procs"])));
  const only = new Set(v.only.split(","));
  for (const name of only) {
    if (![...SECTIONS, "profile"].includes(name)) {
      console.error(`unknown --only part ${name} (${[...SECTIONS, "profile"].join(", ")})`);
      Deno.exit(2);
    }
  }
  const logDir = `${v.out}/logs`;
  await Deno.mkdir(logDir, { recursive: true });

  // Bounded no matter what a server does.
  const watchdog = setTimeout(async () => {
    console.error(`watchdog: ${plan.watchdogMs / 1000} s elapsed, stopping`);
    await killAll();
    Deno.exit(3);
  }, plan.watchdogMs);
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(sig, async () => {
      await killAll();
      Deno.exit(130);
    });
  }
  globalThis.addEventListener("unload", killAllNow);

  const started = Date.now();
  const codeAtStart = await codeState();
  // Benchmarks on a shared box lie quietly: record how busy it was, and say so.
  const loadavgAtStart = loadavg();
  if (loadavgAtStart > navigator.hardwareConcurrency / 2) {
    console.error(`warning: 1-min load average is ${loadavgAtStart} before starting: expect noise`);
  }
  const sections: { name: string; seconds: number; loadavgStart: number; loadavgEnd: number }[] =
    [];
  /** Runs one part; a failure is recorded and the run goes on with the next part. */
  async function part<T>(name: string, fn: () => Promise<T>): Promise<T | { error: string }> {
    const t0 = Date.now();
    const la = loadavg();
    try {
      return await fn();
    } catch (e) {
      console.error(`[${name}] failed: ${(e as Error).stack ?? e}`);
      await killAll();
      return { error: String((e as Error).message ?? e) };
    } finally {
      sections.push({
        name,
        seconds: Math.round((Date.now() - t0) / 1000),
        loadavgStart: la,
        loadavgEnd: loadavg(),
      });
    }
  }

  const reports: Record<string, HerdReport> = {};
  const result: RunResult = {
    meta: { quick: plan.quick },
    reports,
    targets: [],
    chart: {} as ChartData,
  };
  try {
    if (only.has("echo")) {
      const r = await part("echo", () => benchEcho(plan, logDir));
      if (!("error" in r)) reports["echo baseline"] = r;
    }
    if (only.has("asyncio")) {
      const r = await part("asyncio", async () => {
        const h = await startAsyncioHerd(logDir, v.python);
        try {
          return await benchHerd(plan, h);
        } finally {
          await h.stop();
        }
      });
      if (!("error" in r)) reports["asyncio herd"] = r;
    }
    if (only.has("herd")) {
      const r = await part("herd", async () => {
        const h = await startOurHerd(logDir);
        if (!h) return null;
        try {
          return await benchHerd(
            plan,
            h,
            () => measureInterleaved(plan, logDir, h, plan.quick ? 2 : 3),
          );
        } finally {
          await h.stop();
        }
      });
      if (r && !("error" in r)) reports["our herd"] = r;
      // The baseline for our half-peak latency: the echo floor at the very same rate.
      const echo = reports["echo baseline"];
      const rate = reports["our herd"]?.halfPeak?.rate;
      if (echo && rate) {
        const p = await part("echo-at-herd-rate", () => echoAtRate(plan, logDir, rate));
        if (!("error" in p)) echo.atHerdRate = p;
      }
    }
    if (only.has("whatsat")) {
      result.whatsat = await part("whatsat", () => benchWhatsat(plan, logDir));
    }
    if (only.has("sse")) result.sse = await part("sse", () => benchSse(plan, logDir));
    if (only.has("catchup")) {
      result.catchup = await part("catchup", async () => {
        const out = [await benchCatchup(logDir, plan.catchupRecords, false)];
        if (!v["skip-persist"]) out.push(await benchCatchup(logDir, plan.catchupRecords, true));
        return out;
      });
    }
    if (only.has("memory")) {
      result.memory = await part("memory", async () => {
        const out = [await benchMemory(logDir, plan.memoryClients, false)];
        if (!v["skip-persist"]) out.push(await benchMemory(logDir, plan.memoryClients, true));
        return out;
      });
    }
    if (only.has("profile")) {
      result.profile = await part("profile", () => benchProfile(plan, logDir));
    }
  } finally {
    await killAll();
    clearTimeout(watchdog);
  }

  const all = Object.values(reports).flatMap((
    r,
  ) => [...r.points, ...(r.halfPeak ? [r.halfPeak] : [])]);
  console.log();
  printTable(all);
  for (const [name, r] of Object.entries(reports)) {
    for (const p of [r.propagation, r.propagationUnderLoad]) {
      if (!p) continue;
      console.log(
        `${name}: propagation ${r.entry} -> ${p.observed.join("+")} ` +
          (p.load ? `under ${p.load.rate} req/s` : "idle") +
          `: reply->apply p50 ${p.fromReplyP50} ms, p99 ${p.fromReplyP99} ms; ` +
          `send->apply p50 ${p.allP50} ms, p99 ${p.allP99} ms (${p.samples} samples, ${p.lost} lost)`,
      );
    }
    for (const pt of r.points) {
      const parts = [];
      if (pt.flood) {
        parts.push(
          `${pt.flood.messagesPerUpdate} inter-server msgs/update (${pt.flood.updates} updates` +
            (pt.flood.settled ? ")" : ", still flooding at the settle deadline)"),
        );
        if (pt.flood.floodErrors !== undefined) parts.push(`flood errors ${pt.flood.floodErrors}`);
      }
      if (pt.converged) {
        const c = pt.converged;
        parts.push(
          `converged ${c.share * 100}% of ${c.pairs} client/server pairs` +
            (c.ms !== null ? ` ${c.ms} ms after load` : " (NOT within 10 s)"),
        );
      }
      if (parts.length > 0) console.log(`${name} @${pt.connections}: ${parts.join(", ")}`);
    }
  }
  result.chart = {
    title: `Proxy herd bench (closed loop, ${navigator.hardwareConcurrency} CPUs)` +
      (plan.quick ? " (quick run)" : ""),
    series: Object.entries(reports).map(([name, r]) => ({
      name,
      points: r.points.map((p) => ({
        connections: p.connections,
        throughput: p.throughput,
        p99: p.p99,
      })),
    })),
  };
  result.meta = {
    date: new Date().toISOString(),
    quick: plan.quick,
    command: `deno run --allow-all bench/run.ts ${Deno.args.join(" ")}`.trim(),
    machine: await machine(v.python),
    codeAtStart,
    codeAtEnd: await codeState(),
    cpus: navigator.hardwareConcurrency,
    deno: Deno.version.deno,
    os: `${Deno.build.os} ${Deno.build.arch}`,
    warmupMs: plan.warmupMs,
    durationMs: plan.durationMs,
    genProcs: plan.genProcs,
    plan,
    elapsedS: Math.round((Date.now() - started) / 1000),
    loadavgAtStart,
    loadavgAtEnd: loadavg(),
    sections,
  };
  result.targets = judgeTargets(result);
  console.log();
  for (const t of result.targets) {
    const status = t.met === null ? "not judged" : t.met ? "met" : "NOT MET";
    console.log(`target ${t.name} (${t.target}): ${t.measured} -> ${status}`);
  }
  const summary = summaryMarkdown(result);
  await Deno.writeTextFile(`${v.out}/latest.json`, JSON.stringify(result, null, 2) + "\n");
  await Deno.writeTextFile(`${v.out}/summary.md`, summary + "\n");
  if (result.chart.series.length > 0) {
    await Deno.writeTextFile(`${v.out}/chart.svg`, renderChart(result.chart));
  }
  console.log(
    `\nwrote ${v.out}/latest.json, summary.md and chart.svg in ${result.meta.elapsedS} s`,
  );
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error(e);
    await killAll();
    Deno.exit(1);
  }
  Deno.exit(0); // signal listeners would otherwise keep the process alive
}
