/**
 * Catch-up figure: how long a restarted server takes to learn N records it missed while down
 * (N = 1,000,000 in the full run, 100,000 with --quick).
 *
 * Five `main.ts server NAME` processes (one per server, `--memory` unless `persist`); once their
 * links are up, Campbell is SIGKILLed; N distinct clients are bulk-loaded into the other four
 * (bench/bulk.ts, a quarter each) until all four hold all N; then Campbell is started again.
 * One of Campbell's neighbours (Smith, Singleton) streams it its whole change log
 * (docs/protocol.md, SYNC); the other holds its stream and then sends only what their digests say
 * Campbell lacks (`HOLD`, `DIGEST`), so it reads about N records and keeps N.
 *
 * The end is read from Campbell's own log, which costs it nothing while it streams: each link logs
 * `SYNC <peer> ... received R` when its neighbour's stream has ended (CAUGHTUP), with every record
 * of that stream held; the end is the time of the last such line of a stream that brought records,
 * and with the record log no earlier than the record log file's last write (its mtime) when that
 * line has been seen, so every record is written too.
 * Once both links have ended, one observer STATE checks that Campbell holds all N, and a run where
 * it does not has no figure (`failure` says why, loudly in the progress output). The old way,
 * polling Campbell's observer STATE every 100 ms (each poll an observer: a STATE, a snapshot of
 * 2,000 records and a JSON line per record accepted while it is open), slowed the catch-up it
 * measured by ~1 s per 1M (BENCHMARKS.md); `BENCH_CATCHUP_STATE_POLL_MS=100` still runs it, for
 * comparison. `BENCH_CATCHUP_OBSERVER=1` keeps one observer on Campbell from its ready line, as a
 * dashboard watching the restart would, and reports the bytes it got.
 *
 * Reported: the time from spawning Campbell to its holding all N (what an operator waits), split
 * into start-up (spawn → its ready line: Deno start, offline Places index, listen) and catch-up
 * proper (ready line → all N); the `SYNC` lines from Campbell's log (per link: records each way
 * and the link's own ms); and RSS of one server process holding N records (Hill), a figure for
 * the one-process-per-server layout.
 *
 * Run alone: `deno run -A bench/run.ts --only catchup [--quick] [--skip-persist]`. With
 * `BENCH_CATCHUP_PROFILE=1` the restarted server runs under the sampling profiler from its first
 * line (`--inspect-wait`) until its first stream has ended: `<logs>/catchup[+log]-Campbell.cpuprofile`
 * (open in DevTools or speedscope), and its top functions by self time are printed.
 * `BENCH_CATCHUP_DENO_FLAGS` (space-separated) go to the restarted server's `deno run`, e.g.
 * `--v8-flags=--trace-gc`: its output is in `<logs>/catchup[+log]-Campbell-2.log`.
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
  type HerdDir,
  launchServer,
  makeHerdDir,
  recordCounts,
  runBulk,
  waitForHerdLinks,
  waitForRecords,
} from "./herd_proc.ts";
import { observerDrain, serverState } from "./observer.ts";
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
  /** Records it held at the end (one STATE once every stream had ended). */
  held: number | null;
  /**
   * With the record log: spawn → its file's last write when the end was seen (the last records'
   * commit, or the marks' one commit after it): an upper bound on "every record written".
   */
  writtenMs?: number | null;
  /** How the end was taken: the `SYNC` log lines, or (the old way) STATE polls. */
  endMethod?: string;
  /** Why there is no end: none seen, or fewer records held than the target. */
  failure?: string;
  /** Bytes an observer attached for the catch-up received (`BENCH_CATCHUP_OBSERVER=1`). */
  observerBytes?: number | null;
  /** `SYNC <peer> sent S received R in M ms` lines the restarted process logged. */
  syncLines: string[];
  /** Spawn → both links' catch-up streams ended (their `SYNC` lines' times). */
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
    const spawnedWall = Date.now(); // the log's times are wall-clock
    const launched = launchServer(dir, VICTIM, `${logDir}/${label}-${VICTIM}-2.log`, {
      ...opts,
      denoFlags: [
        ...(profiling ? [`--inspect-wait=127.0.0.1:${inspectPort}`] : []),
        ...(Deno.env.get("BENCH_CATCHUP_DENO_FLAGS")?.split(" ").filter((f) => f !== "") ?? []),
      ],
    });
    // The profiler starts before the child runs its first line (it waits for the inspector).
    const inspector = profiling
      ? await Inspector.connect(inspectPort, 20_000, (i) => i.startProfile(250))
      : undefined;
    const pollMs = Number(Deno.env.get("BENCH_CATCHUP_STATE_POLL_MS") ?? 0);
    const restarted = await launched;
    procs.set(VICTIM, restarted);
    const ready = performance.now();
    // Optional: one observer on the restarted server for the whole catch-up, as a dashboard
    // watching the restart would be (`BENCH_CATCHUP_OBSERVER=1`; its bytes are counted).
    const observer = Deno.env.get("BENCH_CATCHUP_OBSERVER") === "1"
      ? await observerDrain(dir.ports[VICTIM], VICTIM, dir.secret)
      : undefined;
    const deadline = ready + Math.max(60_000, records / 10);
    const scanner = new LinkEventScanner(logFile, logStart);
    // Polled: the first poll that sees every record. Else the restarted server's own log says
    // when each stream ended; the CPU and RSS figures are taken once the first has.
    const polled = pollMs > 0
      ? await endByStatePolls(dir, target, deadline, pollMs, spawned)
      : await firstSync(scanner, deadline);
    const rssVictim = processMemory(restarted.child.pid)?.rss ?? null;
    // The record log's last write so far: the commit of the last records (and the marks after
    // them, one commit later), an upper bound on when every record was written.
    const writtenMs = persist
      ? await Deno.stat(`${dir.work}/data/${VICTIM}.records`).then(
        (st) => st.mtime === null ? null : st.mtime.getTime() - spawnedWall,
        () => null,
      )
      : null;
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
    // Every link logs `SYNC` once the neighbour's catch-up stream has ended (CAUGHTUP); the
    // second neighbour's stream is mostly held back and may end after all records are held.
    const syncDeadline = performance.now() + 30_000;
    while (syncedPeers(scanner).size < LINKS && performance.now() < syncDeadline) {
      await scanner.scan();
      if (syncedPeers(scanner).size < LINKS) await sleep(200);
    }
    const syncs = scanner.syncs();
    const syncDoneMs = syncedPeers(scanner).size >= LINKS
      ? Math.max(...syncs.map((x) => x.at)) - spawnedWall
      : null;
    // The end is only an end when every missed record is held: one STATE after it says so.
    const held = (await recordCounts(dir, [VICTIM]))[VICTIM];
    observer?.close();
    let doneMs = polled === null || pollMs > 0 ? polled : streamsEnded(syncs, spawnedWall);
    // With the record log, held is not yet written: the end is no earlier than the log's last
    // write seen then (an upper bound: the marks' commit follows the last records').
    if (doneMs !== null && writtenMs !== null) doneMs = Math.max(doneMs, writtenMs);
    let failure: string | undefined;
    if (doneMs === null) failure = `no end seen within ${Math.round(deadline - ready)} ms`;
    else if (held === null || held < target) {
      failure = `the catch-up streams ended but ${VICTIM} holds ${held} of ${target} records`;
      doneMs = null;
    }
    if (failure !== undefined) progress(`[${label}] FAILED: ${failure}`);
    const startupMs = Math.round(ready - spawned);
    const events = scanner.events();
    const syncLines = events.filter((l) => / SYNC /.test(` ${l}`));
    const report: CatchupReport = {
      records,
      persistence: persist,
      victim: VICTIM,
      load,
      othersMs,
      target,
      startupMs,
      catchupMs: doneMs === null ? null : Math.max(0, doneMs - startupMs),
      totalMs: doneMs,
      held,
      writtenMs,
      endMethod: pollMs > 0 ? `STATE polled every ${pollMs} ms` : "SYNC log lines",
      failure,
      observerBytes: observer?.bytes() ?? null,
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

  /** The `SYNC` lines so far, in log order. */
  syncs(): SyncLine[] {
    const out: SyncLine[] = [];
    for (const l of [...this.lines].sort()) {
      const m = / SYNC (\S+) sent \d+ received (\d+) /.exec(l);
      const at = Date.parse(l.slice(0, l.indexOf(" ")));
      if (m !== null && Number.isFinite(at)) out.push({ peer: m[1], received: Number(m[2]), at });
    }
    return out;
  }

  events(): string[] {
    // Lines start with their ISO time: sorting puts them in log order. The date goes.
    return [...this.lines].sort().map((l) => l.slice(11));
  }
}

/** Links of the restarted server (Smith, Singleton): each streams it a catch-up. */
const LINKS = 2;

/** A `SYNC <peer> sent S received R in M ms` log line: when (epoch ms) and how many came in. */
interface SyncLine {
  peer: string;
  received: number;
  at: number;
}

function syncedPeers(scanner: LinkEventScanner): Set<string> {
  return new Set(scanner.syncs().map((x) => x.peer));
}

/** Scans the log until a stream that brought records has ended; false at `deadline`. */
async function firstSync(scanner: LinkEventScanner, deadline: number): Promise<number | null> {
  while (performance.now() < deadline) {
    await scanner.scan();
    const syncs = scanner.syncs();
    if (syncs.some((x) => x.received > 0) || syncedPeers(scanner).size >= LINKS) return 0;
    await sleep(100);
  }
  return null;
}

/**
 * When the last stream that brought records ended (its `SYNC` line's time), in ms from the spawn.
 * A link logs `SYNC` at the CAUGHTUP line after its last record, in the same read's handling as
 * the records read with it (peers.ts `#handle`): every record it brought is held by then, and no
 * record comes from elsewhere (the load is over). A stream that brought none (the neighbour
 * whose stream was held and then found nothing to send) does not end the catch-up.
 */
function streamsEnded(syncs: SyncLine[], spawnedWall: number): number | null {
  if (syncs.length === 0) return null;
  const feeding = syncs.filter((x) => x.received > 0);
  return Math.max(...(feeding.length > 0 ? feeding : syncs).map((x) => x.at)) - spawnedWall;
}

/**
 * The old end: the restarted server's observer STATE every `pollMs` until it holds `target`
 * (ms from `spawned`, or null at `deadline`). Each poll is an observer: a STATE, a snapshot of
 * 2,000 records and the events while it is open, which the catch-up pays for (BENCHMARKS.md).
 */
async function endByStatePolls(
  dir: HerdDir,
  target: number,
  deadline: number,
  pollMs: number,
  spawned: number,
): Promise<number | null> {
  while (performance.now() < deadline) {
    const s = await serverState(dir.ports[VICTIM], VICTIM, dir.secret, 5000);
    if (s !== null && s.records >= target) return Math.round(performance.now() - spawned);
    await sleep(pollMs);
  }
  return null;
}

/** Log line kinds about links (servers/log.ts), with the spaces around them. */
const KINDS = [" SYNC ", " LINK UP ", " LINK DOWN ", " PEER REJECTED ", " ERROR "];
