/**
 * The herd part: on any {@linkcode HerdHandle} (ours or the asyncio seed), propagation on an idle
 * herd, IAMAT at each connection count with flooding counters and convergence, open loop at half
 * of the 32-connection peak, and propagation under that load.
 *
 * @module
 */

import { lineEnd, type LoadMode, whatsatEnd } from "./load.ts";
import {
  type Convergence,
  decoder,
  encoder,
  type FloodStats,
  type LastTimes,
  loadavg,
  measure,
  nowText,
  openClient,
  type Plan,
  type Point,
  progress,
  sleep,
} from "./common.ts";
import type { HerdCounters, HerdHandle } from "./herds.ts";
import {
  measurePropagation,
  measurePropagationUnderLoad,
  type Propagation,
} from "./propagation.ts";

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

/** Everything measured for one herd. */
export interface HerdReport {
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
export async function waitForLinks(h: HerdHandle): Promise<void> {
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
export async function benchHerd(
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
export function peakOf(plan: Plan, points: Point[]): number {
  const at = points.filter((p) => p.connections === plan.halfPeakConnections && p.rate === 0);
  if (at.length === 0) return Math.max(0, ...points.map((p) => p.throughput));
  return median(at.map((p) => p.throughput));
}

/** The middle value (the mean of the two middle ones for an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Open loop at half the 32-connection closed-loop throughput, over 32 connections: latency at a
 * load the server can carry.
 */
export async function measureHalfPeak(
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
export interface Interleaved {
  connections: number;
  echo: Point[];
  herd: Point[];
  ratios: number[];
  median: number;
}
