/**
 * Benchmark orchestrator (`deno task bench`). Every figure of issues 6 and 13, with its baselines
 * measured in the same run:
 *
 * - `compare`: our herd (`start`, and five `server` processes) beside the machine's floor (a C
 *   line echo), the Deno echoes and replicated Redis (a primary and four replicas, AOF everysec),
 *   all loaded by the native generator bench/loadgen.c at 1, 32 and 256 connections, 32 in
 *   interleaved rounds; half-peak p99; Redis's RSS and replica resync (bench/compare.ts);
 * - `echo`: the Deno runtime floor (bench/echo_server.ts) at 1, 32 and 256 connections, and open
 *   loop at half of its 32-connection peak, through the Deno generator bench/load.ts;
 * - `asyncio`: the seed design (bench/asyncio_herd.py, five Python processes), and
 * - `herd`: our herd (`main.ts start`), each with IAMAT at 1/32/256 connections, open loop at half
 *   of the 32-connection peak, propagation Hill → farthest servers on an idle herd and while the
 *   half-peak load runs, inter-server messages per update, and convergence;
 * - `whatsat`: WHATSAT 50 km / 20 results in Los Angeles, offline index and fake Google on
 *   loopback, at 1 and 32 connections (bench/whatsat.ts);
 * - `sse`: 32-connection IAMAT with 0 and 100 dashboard event-stream readers (bench/sse.ts);
 * - `catchup`: a restarted server catching up on 1M missed records (bench/catchup.ts), then a
 *   Redis replica restarted empty resyncing as many members (bench/redis.ts `redisResync`);
 * - `startup`: spawn of a `server` process to its port accepting, its first reply and its
 *   "listening" line, beside a bare Deno listener (bench/startup.ts);
 * - `memory`: RSS of one process with 1M clients known to all five servers (bench/memory.ts);
 *   both in memory only (`--memory`) and again with the record log (servers/persist.ts, the
 *   default deployment and what the targets are judged on) unless `--skip-persist`;
 * - `profile` (only on request): CPU profile under 32-connection IAMAT (bench/profile.ts).
 *
 * `--quick` (minutes) runs every part at a smaller scale: 1.5 s load windows, 100,000
 * records for memory and catch-up (not judged against the 1M targets). The full run takes about
 * 20-30 minutes. Both are bounded by a watchdog that kills every child and exits, and a part that
 * fails is recorded and skipped (and makes the run exit 1 under `CI=true`). Writes
 * `<out>/latest.json`, `<out>/summary.md` (the tables BENCHMARKS.md quotes) and `<out>/chart.svg`
 * (out defaults to bench/results), and prints a table and the targets. Children's output goes to
 * `<out>/logs/`.
 *
 * Load comes from separate bench/load.ts processes (2 of them at 256 connections) so the generator
 * is not one single-threaded bottleneck; their histograms are merged here. On a small box the
 * generator shares the CPUs with the servers: compare series with each other, not with other boxes.
 * The 1-minute load average is recorded at the start and end of every part.
 *
 * The parts that need our herd are the functions under "HOOKS: our herd" in bench/herds.ts and
 * bench/herd_proc.ts. One file per part (bench/echo.ts, herd.ts, whatsat.ts, sse.ts, catchup.ts,
 * memory.ts, profile.ts); the report (targets, summary.md) is bench/report.ts.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type ChartData, renderChart } from "./chart.ts";
import { killAll, killAllNow, loadavg, type Plan, ROOT } from "./common.ts";
import { benchEcho, echoAtRate } from "./echo.ts";
import { benchHerd, type HerdReport } from "./herd.ts";
import { startAsyncioHerd, startOurHerd } from "./herds.ts";
import { measureInterleaved } from "./interleaved.ts";
import {
  codeState,
  judgeTargets,
  machine,
  printCompare,
  printHerdLines,
  printTable,
  type RunResult,
  summaryMarkdown,
} from "./report.ts";
import { benchWhatsat } from "./whatsat.ts";
import { benchSse } from "./sse.ts";
import { benchCatchup } from "./catchup.ts";
import { benchStartup } from "./startup.ts";
import { benchMemory } from "./memory.ts";
import { benchProfile } from "./profile.ts";
import { benchCompare } from "./compare.ts";
import { redisResync } from "./redis.ts";

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
      watchdogMs: 900_000,
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
      watchdogMs: 2_700_000,
      markerGapMs: 20,
      whatsatConnections: [1, 32],
      memoryClients: 1_000_000,
      catchupRecords: 1_000_000,
      sseSubscribers: 100,
    };
}

// ---------------------------------------------------------------------------------------------

const SECTIONS = [
  "compare",
  "echo",
  "asyncio",
  "herd",
  "whatsat",
  "sse",
  "catchup",
  "startup",
  "memory",
];
const PARTS = [...SECTIONS, "profile"];

const USAGE = `Usage: deno task bench [options]

Runs the benchmark parts and prints the table and the targets (met / not met); writes
<out>/latest.json, <out>/summary.md and <out>/chart.svg.

Options:
  --quick             every part at a smaller scale (minutes, not tens of minutes)
  --only LIST         comma-separated parts: ${PARTS.join(",")}
                      (default: all but profile)
  --skip-persist      memory and catch-up without their record-log variants
  --gen-procs N       bench/load.ts processes at 64+ connections (default 2)
  --out DIR           where results go (default bench/results)
  --python PATH       Python for the asyncio seed herd (default python3)
  -h, --help          this text

Environment: BENCH_KEEP_DIRS=1 keeps the herds' temp dirs; CI=true turns every loud skip
(no cc, no redis-server) into a failure.`;

/** The command line, or one line on stderr and exit 2. */
function parseFlags(args: string[]) {
  const fail = (msg: string): never => {
    console.error(`bench: ${msg} (deno task bench --help)`);
    Deno.exit(2);
  };
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        help: { type: "boolean", short: "h", default: false },
        quick: { type: "boolean", default: false },
        only: { type: "string", default: SECTIONS.join(",") },
        "gen-procs": { type: "string", default: "2" },
        out: { type: "string", default: `${ROOT}bench/results` },
        python: { type: "string", default: "python3" },
        "skip-persist": { type: "boolean", default: false },
      },
    });
  } catch (e) {
    return fail((e as Error).message.split("\n")[0]);
  }
  const v = parsed.values;
  if (v.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const genProcs = Number(v["gen-procs"]);
  if (!Number.isInteger(genProcs) || genProcs < 1 || genProcs > 16) {
    fail(`--gen-procs wants an integer 1..16, got '${v["gen-procs"]}'`);
  }
  const only = new Set(v.only.split(","));
  for (const name of only) {
    if (!PARTS.includes(name)) fail(`unknown --only part '${name}' (${PARTS.join(", ")})`);
  }
  return { ...v, genProcs, only };
}

async function main(): Promise<void> {
  const v = parseFlags(Deno.args);
  const plan = planFor(v.quick, v.genProcs);
  const only = v.only;
  const logDir = `${v.out}/logs`;
  await Deno.mkdir(logDir, { recursive: true });

  const started = Date.now();
  const codeAtStart = await codeState();
  // Benchmarks on a shared box lie quietly: record how busy it was, and say so.
  const loadavgAtStart = loadavg();
  if (loadavgAtStart > navigator.hardwareConcurrency / 2) {
    console.error(`warning: 1-min load average is ${loadavgAtStart} before starting: expect noise`);
  }
  const sections: { name: string; seconds: number; loadavgStart: number; loadavgEnd: number }[] =
    [];
  const failedParts: string[] = [];
  /** Runs one part; a failure is recorded and the run goes on with the next part. */
  async function part<T>(name: string, fn: () => Promise<T>): Promise<T | { error: string }> {
    const t0 = Date.now();
    const la = loadavg();
    try {
      return await fn();
    } catch (e) {
      console.error(`[${name}] failed: ${(e as Error).stack ?? e}`);
      failedParts.push(name);
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
  /**
   * Prints the tables and targets and writes the results: at the end, or with whatever was
   * measured when the watchdog or a signal stops the run (`stoppedBy`, set before the children
   * are killed, since the part that was running then fails and the run goes on to here).
   */
  let writing: Promise<void> | null = null;
  let stoppedBy: string | null = null;
  // One write, whoever asks first: the main path and a signal handler await the same promise.
  const writeResults = () =>
    writing ??= (async () => {
      const all = Object.values(reports).flatMap((
        r,
      ) => [...r.points, ...(r.halfPeak ? [r.halfPeak] : [])]);
      console.log();
      printTable(all);
      printHerdLines(reports);
      if (result.compare && !("error" in result.compare)) printCompare(result.compare);
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
        ...(stoppedBy ? { stoppedBy } : {}),
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
    })();
  // Bounded no matter what a server does; what was measured by then is still written.
  const watchdog = setTimeout(async () => {
    console.error(`watchdog: ${plan.watchdogMs / 1000} s elapsed, stopping`);
    stoppedBy = `watchdog after ${plan.watchdogMs / 1000} s`;
    await killAll();
    await writeResults().catch(() => {});
    Deno.exit(3);
  }, plan.watchdogMs);
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(sig, async () => {
      stoppedBy = sig;
      await killAll();
      await writeResults().catch(() => {});
      Deno.exit(130);
    });
  }
  globalThis.addEventListener("unload", killAllNow);
  try {
    if (only.has("compare")) {
      result.compare = await part("compare", () => benchCompare(plan, logDir));
    }
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
      // The target's second half: a Redis replica's resync of as many members, in this run.
      result.catchupRedis = await part(
        "catchup-redis",
        () => redisResync(logDir, plan.catchupRecords),
      );
    }
    if (only.has("startup")) {
      result.startup = await part(
        "startup",
        () => benchStartup(plan.quick ? 3 : 5, plan.quick ? 5_000 : 20_000),
      );
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

  await writeResults();
  // CI runs expect every part to run: a part that failed (or skipped loudly) fails the run.
  if (failedParts.length > 0 && Deno.env.get("CI") === "true") {
    console.error(`CI=true: parts failed: ${failedParts.join(", ")}`);
    Deno.exit(1);
  }
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
