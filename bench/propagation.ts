/**
 * Propagation latency of marker IAMATs from the entry server to the farthest ones, on an idle herd
 * and under open-loop load.
 *
 * @module
 */

import { Histogram } from "./hist.ts";
import { lineEnd } from "./load.ts";
import {
  encoder,
  loadStartAt,
  measure,
  nowText,
  openClient,
  type Plan,
  type Point,
  r3,
  sleep,
} from "./common.ts";
import type { HerdHandle } from "./herds.ts";

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
export async function samplePropagation(
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
export function measurePropagation(h: HerdHandle, samples: number): Promise<Propagation> {
  return samplePropagation(h, { samples, gapMs: 5, load: null });
}

/**
 * Propagation under load: open-loop IAMATs at `rate` req/s over the half-peak connections at the
 * entry (bench/load.ts, separate processes), and markers every `plan.markerGapMs` through the
 * measured window. Returns the markers' propagation and the load point itself (its latencies
 * include the cost of the observer streams).
 */
export async function measurePropagationUnderLoad(
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
