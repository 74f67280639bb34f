/**
 * CPU profiles of the herd under the 32-connection closed-loop IAMAT load, to see where the time
 * goes when a target is missed. `main.ts start` with `--inspect` on a loopback port; the V8
 * sampling profiler (bench/inspector.ts) runs for the measured window of one bench/load.ts point.
 * Two cases:
 *
 * - `plain`: the main run's flags (record-log persistence, offline Places, no dashboard);
 * - `dashboard`: the same with the dashboard on, no event-stream reader;
 * - `dashboard+N readers`: and `sseSubscribers` event-stream readers (bench/sse_readers.ts), the
 *   case of the SSE-cost figure.
 *
 * Writes each raw profile to `<out>/logs/herd-iamat32-<case>.cpuprofile` (open it in Chrome
 * DevTools or speedscope) and returns the top functions by self time. Sampling costs the herd a
 * few percent, so throughput here is a little below the main run's. Not part of the default run:
 * `deno run -A bench/run.ts --only profile [--quick]`.
 *
 * @module
 */

import {
  HERD_NAMES,
  loadavg,
  loadStartAt,
  measure,
  type Plan,
  type Point,
  type Proc,
  progress,
  ROOT,
  sleep,
  stablePortBase,
  startProcess,
} from "./common.ts";
import { launchStart, makeHerdDir, waitForHerdLinks } from "./herd_proc.ts";
import { Inspector, type SelfTime, topSelfTime } from "./inspector.ts";

/** One profiled case. */
export interface ProfileCase {
  name: string;
  point: Point;
  /** Profiled time, and the top functions by self time. */
  totalMs: number;
  top: SelfTime[];
  /** Where the raw profile went. */
  file: string;
  loadavg: number;
}

/** The profile figure. */
export interface ProfileReport {
  cases: ProfileCase[];
}

async function profileCase(
  plan: Plan,
  logDir: string,
  name: string,
  dashboard: boolean,
  readerCount = 0,
): Promise<ProfileCase> {
  const dir = await makeHerdDir(31000);
  const inspectPort = stablePortBase(1, 31500);
  const dashboardPort = dashboard ? stablePortBase(1, 31600) : undefined;
  const herd = await launchStart(dir, `${logDir}/profile-${name}-herd.log`, {
    persist: true,
    dashboardPort,
    denoFlags: [`--inspect=127.0.0.1:${inspectPort}`],
  }).catch(async (e) => {
    await dir.remove(); // the finally below is not reached
    throw e;
  });
  let readers: Proc | undefined;
  let inspector: Inspector | undefined;
  try {
    inspector = await Inspector.connect(inspectPort);
    if (!(await waitForHerdLinks(dir, HERD_NAMES, 15_000))) throw new Error("links not up");
    if (dashboardPort !== undefined && readerCount > 0) {
      readers = await startProcess(
        Deno.execPath(),
        [
          "run",
          "-A",
          `${ROOT}bench/sse_readers.ts`,
          "--url",
          `http://127.0.0.1:${dashboardPort}/api/events`,
          "--count",
          String(readerCount),
          "--max-ms",
          String(plan.warmupMs + plan.durationMs + 60_000),
        ],
        `${logDir}/profile-sse-readers.log`,
        { ready: /^READY /, readyMs: 30_000 },
      );
    }
    progress(`[profile] ${name}: IAMAT x 32 connections, sampling profiler on`);
    const startAt = loadStartAt();
    const load = measure(plan, `our herd, ${name} (profiled)`, dir.ports.Hill, "iamat", 32, 0, {
      startAt,
    });
    // Profile the measured window only (after the generators' warm-up).
    await sleep(Math.max(0, startAt - Date.now() + plan.warmupMs));
    await inspector.startProfile(250);
    await sleep(plan.durationMs);
    const profile = await inspector.stopProfile();
    const [point] = await load;
    const file = `${logDir}/herd-iamat32-${name}.cpuprofile`;
    await Deno.writeTextFile(file, JSON.stringify(profile));
    const { totalMs, top } = topSelfTime(profile, 25, ROOT);
    return { name, point, totalMs, top, file, loadavg: loadavg() };
  } finally {
    inspector?.close();
    await readers?.stop();
    await herd.stop();
    await dir.remove();
  }
}

/** Profiles the herd under 32-connection IAMAT load: plain, dashboard, dashboard + readers. */
export async function benchProfile(plan: Plan, logDir: string): Promise<ProfileReport> {
  const n = plan.sseSubscribers;
  return {
    cases: [
      await profileCase(plan, logDir, "plain", false),
      await profileCase(plan, logDir, "dashboard", true),
      await profileCase(plan, logDir, `dashboard+${n}readers`, true, n),
    ],
  };
}
