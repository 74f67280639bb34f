/**
 * Catch-up figure: how long a restarted server takes to learn N records it missed while down
 * (N = 1,000,000 in the full run, 100,000 with --quick).
 *
 * Five `main.ts server NAME` processes (one per server, `--memory` unless `persist`); once their
 * links are up, Campbell is SIGKILLed; N distinct clients are bulk-loaded into the other four
 * (bench/bulk.ts, a quarter each) until all four hold all N; then Campbell is started again and
 * its observer STATE line is polled every 100 ms until it holds N. One of Campbell's neighbours
 * (Smith, Singleton) streams it its whole change log (docs/protocol.md, SYNC); the other holds
 * its stream and then sends only what their digests say Campbell lacks (`HOLD`, `DIGEST`), so it
 * reads about N records and keeps N.
 *
 * Reported: the time from spawning Campbell to its holding all N (what an operator waits), split
 * into start-up (spawn → its ready line: Deno start, offline Places index, listen) and catch-up
 * proper (ready line → all N); the `SYNC` lines from Campbell's log (per link: records each way
 * and the link's own ms); and RSS of one server process holding N records (Hill), a figure for
 * the one-process-per-server layout.
 *
 * Run alone: `deno run -A bench/run.ts --only catchup [--quick] [--skip-persist]`. With
 * `BENCH_CATCHUP_PROFILE=1` the restarted server runs under the sampling profiler from its first
 * line (`--inspect-wait`) until it holds every record: `<logs>/catchup[+log]-Campbell.cpuprofile`
 * (open in DevTools or speedscope), and its top functions by self time are printed.
 *
 * @module
 */

import {
  HERD_NAMES,
  killChild,
  loadavg,
  processCpuMs,
  processMemory,
  progress,
  ROOT,
  sleep,
  stablePortBase,
} from "./common.ts";
import type { Proc } from "./common.ts";
import type { BulkResult } from "./bulk.ts";
import {
  launchServer,
  makeHerdDir,
  recordCounts,
  runBulk,
  waitForHerdLinks,
  waitForRecords,
} from "./herd_proc.ts";
import { serverState } from "./observer.ts";
import { Inspector, topSelfTime } from "./inspector.ts";

/** The restarted server. */
const VICTIM = "Campbell";

/** The catch-up figure. Times in ms, sizes in bytes. */
export interface CatchupReport {
  records: number;
  persistence: boolean;
  victim: string;
  /** Bulk load into the other four. */
  load: BulkResult;
  /** Until all four others held all records (from the first IAMAT). */
  othersMs: number;
  /** Records the others agree on (N unless some were lost by the load). */
  target: number;
  /** Spawn → the restarted server's ready line (process start, index, listen). */
  startupMs: number;
  /** Ready line → holding every record. */
  catchupMs: number | null;
  /** Spawn → holding every record: the figure the target is judged on. */
  totalMs: number | null;
  /** Records it held at the end. */
  held: number | null;
  /** `SYNC <peer> sent S received R in M ms` lines the restarted process logged. */
  syncLines: string[];
  /** Spawn → both links' catch-up streams ended (seen in the log, to within ~200 ms). */
  syncDoneMs: number | null;
  /** The restarted server's link events (LINK UP/DOWN, SYNC, PEER REJECTED, ERROR), in order. */
  linkEvents: string[];
  /** RSS of the restarted server once caught up, and of one other server with N records. */
  rssVictim: number | null;
  rssOther: number | null;
  /**
   * CPU time (ms) spawn → all held: of the restarted server, and of its two neighbours that
   * stream to it (what the catch-up costs them). Load moves these far less than the times.
   */
  cpuVictimMs: number | null;
  cpuNeighboursMs: number | null;
  loadavgStart: number;
  loadavgEnd: number;
}

/** Runs the catch-up figure for `records` missed records. */
export async function benchCatchup(
  logDir: string,
  records: number,
  persist: boolean,
): Promise<CatchupReport> {
  const loadavgStart = loadavg();
  const dir = await makeHerdDir(28000);
  const label = persist ? "catchup+log" : "catchup";
  const procs = new Map<string, Proc>();
  try {
    const opts = { persist };
    await Promise.all(HERD_NAMES.map(async (n) => {
      procs.set(n, await launchServer(dir, n, `${logDir}/${label}-${n}.log`, opts));
    }));
    if (!(await waitForHerdLinks(dir, HERD_NAMES, 20_000))) {
      throw new Error("links did not come up");
    }
    const victim = procs.get(VICTIM)!;
    victim.child.kill("SIGKILL");
    await victim.child.status;
    await killChild(victim.child);
    procs.delete(VICTIM);
    const others = HERD_NAMES.filter((n) => n !== VICTIM);
    progress(`[${label}] ${VICTIM} killed; ${records} clients into ${others.join(", ")}`);

    const t0 = performance.now();
    const load = await runBulk([
      "--ports",
      others.map((n) => dir.ports[n]).join(","),
      "--count",
      String(records),
      "--prefix",
      "k",
      "--window",
      "768",
      "--timeout-ms",
      String(Math.max(120_000, records / 2)),
    ]);
    progress(
      `[${label}] loaded in ${
        (load.ms / 1000).toFixed(1)
      } s (${load.rate}/s, ${load.errors} errors)`,
    );
    const spread = await waitForRecords(dir, others, records, {
      pollMs: 500,
      timeoutMs: Math.max(60_000, records / 4),
      stallMs: 15_000,
    });
    const othersMs = Math.round(performance.now() - t0);
    const known = Object.values(spread.counts).filter((v): v is number => v !== null);
    // Records lost by the load are not Campbell's to catch up: aim at what the others agree on.
    const target = spread.ok ? records : Math.min(...known);
    const rssOther = processMemory(procs.get("Hill")!.child.pid)?.rss ?? null;
    progress(
      `[${label}] others hold ${
        JSON.stringify(spread.counts)
      } after ${othersMs} ms; restarting ${VICTIM}`,
    );
    await sleep(1000);

    // Restart and time it. Its log is appended to: remember where the new run's lines start.
    const logFile = `${dir.work}/logs/${VICTIM}.log`;
    const logStart = await Deno.stat(logFile).then((s) => s.size, () => 0);
    const profiling = Deno.env.get("BENCH_CATCHUP_PROFILE") === "1";
    const inspectPort = stablePortBase(1, 28500);
    const neighbours = ["Smith", "Singleton"].map((n) => procs.get(n)!.child.pid);
    const neighboursCpu = () => {
      const t = neighbours.map(processCpuMs);
      return t.every((v) => v !== null) ? t.reduce((a, b) => a! + b!, 0)! : null;
    };
    const cpuBefore = neighboursCpu();
    const spawned = performance.now();
    const launched = launchServer(dir, VICTIM, `${logDir}/${label}-${VICTIM}-2.log`, {
      ...opts,
      denoFlags: profiling ? [`--inspect-wait=127.0.0.1:${inspectPort}`] : [],
    });
    // The profiler starts before the child runs its first line (it waits for the inspector).
    const inspector = profiling
      ? await Inspector.connect(inspectPort, 20_000, (i) => i.startProfile(250))
      : undefined;
    const restarted = await launched;
    procs.set(VICTIM, restarted);
    const ready = performance.now();
    let held: number | null = null;
    let doneAt: number | null = null;
    const deadline = ready + Math.max(60_000, records / 10);
    while (performance.now() < deadline) {
      const s = await serverState(dir.ports[VICTIM], VICTIM, dir.secret, 5000);
      held = s?.records ?? held;
      if (held !== null && held >= target) {
        doneAt = performance.now();
        break;
      }
      await sleep(100);
    }
    const rssVictim = processMemory(restarted.child.pid)?.rss ?? null;
    const cpuVictimMs = processCpuMs(restarted.child.pid);
    const cpuAfter = neighboursCpu();
    const cpuNeighboursMs = cpuBefore === null || cpuAfter === null ? null : cpuAfter - cpuBefore;
    if (inspector !== undefined) {
      const profile = await inspector.stopProfile();
      inspector.close();
      const file = `${logDir}/${label}-${VICTIM}.cpuprofile`;
      await Deno.writeTextFile(file, JSON.stringify(profile));
      const { totalMs, top } = topSelfTime(profile, 20, ROOT);
      progress(`[${label}] profile of ${VICTIM}'s restart (${totalMs} ms sampled): ${file}`);
      for (const t of top) {
        progress(`  ${t.ms.toFixed(0).padStart(6)} ms  ${t.functionName} ${t.where}`);
      }
    }
    // Each link logs `SYNC` once the neighbour's catch-up stream has ended (CAUGHTUP); the
    // second neighbour's stream is mostly duplicates and may end after all records are held.
    const links = 2;
    const scanner = new LinkEventScanner(logFile, logStart);
    let events: string[] = [];
    const synced = () => new Set(events.flatMap((l) => /SYNC (\S+)/.exec(l)?.[1] ?? [])).size;
    const syncDeadline = performance.now() + 30_000;
    while (synced() < links && performance.now() < syncDeadline) {
      events = await scanner.scan();
      if (synced() < links) await sleep(200);
    }
    const syncDoneMs = synced() >= links ? Math.round(performance.now() - spawned) : null;
    const syncLines = events.filter((l) => / SYNC /.test(` ${l}`));
    const report: CatchupReport = {
      records,
      persistence: persist,
      victim: VICTIM,
      load,
      othersMs,
      target,
      startupMs: Math.round(ready - spawned),
      catchupMs: doneAt === null ? null : Math.round(doneAt - ready),
      totalMs: doneAt === null ? null : Math.round(doneAt - spawned),
      held,
      syncLines,
      syncDoneMs,
      linkEvents: events,
      rssVictim,
      rssOther,
      cpuVictimMs,
      cpuNeighboursMs,
      loadavgStart,
      loadavgEnd: loadavg(),
    };
    if (doneAt === null) {
      report.held = (await recordCounts(dir, [VICTIM]))[VICTIM] ?? held;
    }
    return report;
  } finally {
    await Promise.all([...procs.values()].map((p) => p.stop()));
    await dir.remove();
  }
}

/**
 * Collects the link events (SYNC, LINK UP/DOWN, ...) appended to a log after byte `from`,
 * reading only what is new at each call (a million-record catch-up writes hundreds of MB of log).
 */
class LinkEventScanner {
  #offset: number;
  #tail = "";
  #buf = new Uint8Array(1 << 20);
  #decoder = new TextDecoder("latin1");
  readonly lines = new Set<string>();

  constructor(readonly file: string, from: number) {
    this.#offset = from;
  }

  /** Every link event so far, in log order, without the timestamp's date. */
  async scan(): Promise<string[]> {
    let f: Deno.FsFile;
    try {
      f = await Deno.open(this.file);
    } catch {
      return this.events();
    }
    try {
      await f.seek(this.#offset, Deno.SeekMode.Start);
      while (true) {
        const n = await f.read(this.#buf);
        if (n === null) break;
        this.#offset += n;
        const text = this.#tail + this.#decoder.decode(this.#buf.subarray(0, n));
        const cut = text.lastIndexOf("\n") + 1;
        this.#tail = text.slice(cut);
        // Records are the bulk of the log; link events are rare: find them by their kinds.
        for (const kind of KINDS) {
          for (let i = text.indexOf(kind); i >= 0 && i < cut; i = text.indexOf(kind, i + 1)) {
            const start = text.lastIndexOf("\n", i) + 1;
            const end = text.indexOf("\n", i);
            this.lines.add(text.slice(start, end));
          }
        }
      }
    } finally {
      f.close();
    }
    return this.events();
  }

  events(): string[] {
    // Lines start with their ISO time: sorting puts them in log order. The date goes.
    return [...this.lines].sort().map((l) => l.slice(11));
  }
}

/** Log line kinds about links (servers/log.ts), with the spaces around them. */
const KINDS = [" SYNC ", " LINK UP ", " LINK DOWN ", " PEER REJECTED ", " ERROR "];
