/**
 * SSE-cost figure: what 100 open dashboards cost the herd. One `main.ts start` with the
 * dashboard on (same flags as the main herd run otherwise: record-log persistence, offline Places);
 * 32-connection closed-loop IAMAT throughput at Hill with no event-stream reader, then with
 * `sseSubscribers` concurrent `GET /api/events` readers (bench/sse_readers.ts, a separate process
 * that reads every stream as fast as it comes), then (full run) with none again, to see drift.
 * The figure is throughput with readers ÷ the mean throughput without.
 *
 * The readers run on the same 2 CPUs as the herd and the load generator, so their own reading
 * is part of the cost measured here; on a real deployment the browsers are elsewhere.
 *
 * Run alone: `deno run -A bench/run.ts --only sse [--quick]`.
 *
 * @module
 */

import {
  decoder,
  loadavg,
  measure,
  type Plan,
  type Point,
  processCpuMs,
  progress,
  ROOT,
  stablePortBase,
  startProcess,
} from "./common.ts";
import { launchStart, makeHerdDir, waitForHerdLinks } from "./herd_proc.ts";
import type { ReadersResult } from "./sse_readers.ts";
import { HERD_NAMES } from "./common.ts";

/** The SSE-cost figure. */
export interface SseReport {
  subscribers: number;
  /** 32-connection IAMAT points: without readers, with them, and (full run) without again. */
  without: Point[];
  with: Point;
  /** with.throughput ÷ mean(without.throughput). */
  ratio: number;
  /** 1 − ratio, in percent. */
  dropPercent: number;
  /** What the readers got while the load ran. */
  readers: ReadersResult | null;
  /** Dashboard counters (from /metrics) while the readers were connected. */
  hub: Record<string, number>;
  /**
   * The herd process's CPU (all threads) per IAMAT answered, in µs, for each point: without
   * readers, with them, and without again. CPU hardly moves with the machine's load, so on a
   * shared box this says what the readers cost the herd better than the throughput does.
   */
  herdCpuUs: { without: number[]; with: number };
  /** The readers' own process's CPU ms while the load ran (it shares the herd's CPUs). */
  readersCpuMs: number | null;
  loadavgStart: number;
  loadavgEnd: number;
}

async function hubMetrics(port: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    for (const line of text.split("\n")) {
      const m = /^herd_dashboard_(\w+) (\d+)/.exec(line);
      if (m) out[m[1]] = Number(m[2]);
    }
  } catch {
    // dashboard not answering
  }
  return out;
}

/** Runs the SSE-cost figure. */
export async function benchSse(plan: Plan, logDir: string): Promise<SseReport> {
  const loadavgStart = loadavg();
  const dir = await makeHerdDir(29000);
  const dashboardPort = stablePortBase(1, 29500);
  const herd = await launchStart(dir, `${logDir}/sse-herd.log`, {
    persist: true,
    dashboardPort,
  }).catch(async (e) => {
    await dir.remove(); // the finally below is not reached
    throw e;
  });
  try {
    if (!(await waitForHerdLinks(dir, HERD_NAMES, 15_000))) throw new Error("links not up");
    const port = dir.ports.Hill;
    const n = plan.sseSubscribers;
    const without: Point[] = [];
    const herdCpuUs = { without: [] as number[], with: 0 };
    // The herd's CPU over a point (warm-up included) per request it answered in that time.
    const cpuPoint = async (series: string): Promise<[Point, number]> => {
      const before = processCpuMs(herd.pid) ?? NaN;
      const point = (await measure(plan, series, port, "iamat", 32))[0];
      const ms = (processCpuMs(herd.pid) ?? NaN) - before;
      const answered = point.throughput * (plan.warmupMs + plan.durationMs) / 1000;
      return [point, Math.round((ms * 1000) / answered * 10) / 10];
    };
    progress(`[sse] IAMAT x 32 connections, dashboard on, no event-stream readers`);
    {
      const [p, cpu] = await cpuPoint("dashboard, 0 readers");
      without.push(p);
      herdCpuUs.without.push(cpu);
    }

    progress(`[sse] ${n} event-stream readers`);
    const readersLog = `${logDir}/sse-readers.log`;
    const readers = await startProcess(
      Deno.execPath(),
      [
        "run",
        "-A",
        `${ROOT}bench/sse_readers.ts`,
        "--url",
        `http://127.0.0.1:${dashboardPort}/api/events`,
        "--count",
        String(n),
        "--max-ms",
        String(plan.warmupMs + plan.durationMs + 60_000),
      ],
      readersLog,
      { ready: /^READY /, readyMs: 30_000 },
    );
    let withPoint: Point;
    let hub: Record<string, number>;
    let result: ReadersResult | null = null;
    let readersCpuMs: number | null = null;
    try {
      progress(`[sse] IAMAT x 32 connections with ${n} readers`);
      const readersBefore = processCpuMs(readers.child.pid);
      [withPoint, herdCpuUs.with] = await cpuPoint(`dashboard, ${n} readers`);
      const readersAfter = processCpuMs(readers.child.pid);
      if (readersBefore !== null && readersAfter !== null) {
        readersCpuMs = readersAfter - readersBefore;
      }
      hub = await hubMetrics(dashboardPort);
    } finally {
      await readers.stop();
      const lines = decoder.decode(await Deno.readFile(readersLog)).trim().split("\n");
      try {
        result = JSON.parse(lines[lines.length - 1]);
      } catch {
        result = null;
      }
    }
    if (!plan.quick) {
      progress(`[sse] IAMAT x 32 connections, no readers again`);
      const [p, cpu] = await cpuPoint("dashboard, 0 readers (after)");
      without.push(p);
      herdCpuUs.without.push(cpu);
    }
    const base = without.reduce((a, p) => a + p.throughput, 0) / without.length;
    const ratio = Math.round((withPoint.throughput / base) * 1000) / 1000;
    return {
      subscribers: n,
      without,
      with: withPoint,
      ratio,
      dropPercent: Math.round((1 - ratio) * 1000) / 10,
      readers: result,
      hub,
      herdCpuUs,
      readersCpuMs,
      loadavgStart,
      loadavgEnd: loadavg(),
    };
  } finally {
    await herd.stop();
    await dir.remove();
  }
}
