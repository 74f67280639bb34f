/**
 * Our herd as child processes for the benchmark: `main.ts start` (all five servers in one
 * process) or `main.ts server NAME` (one per process), on a free block of ports below the
 * ephemeral range, in a temp dir holding the config, the logs and (optionally) the data, with a
 * herd secret the bench knows so it can observe the servers (bench/observer.ts).
 *
 * Every child is tracked by bench/common.ts, so any exit path kills it.
 *
 * @module
 */

import type { BulkResult } from "./bulk.ts";
import {
  HERD_NAMES,
  herdConfig,
  type Proc,
  runJsonChild,
  sleep,
  stablePortBase,
  startProcess,
  waitForPorts,
} from "./common.ts";
import { randomHex, serverState } from "./observer.ts";

/** A temp dir with a herd config for the default topology on a free port block. */
export interface HerdDir {
  work: string;
  config: string;
  ports: Record<string, number>;
  secret: string;
  /** Removes the dir (logs of a million-record run are gigabytes). */
  remove(): Promise<void>;
}

/** Makes a {@linkcode HerdDir} with ports from `portFrom` up. */
export async function makeHerdDir(portFrom: number): Promise<HerdDir> {
  const base = stablePortBase(5, portFrom);
  const work = await Deno.makeTempDir({ prefix: "herd-bench-" });
  const config = `${work}/herd.json`;
  await Deno.writeTextFile(config, JSON.stringify(herdConfig(base)));
  await Deno.mkdir(`${work}/logs`);
  return {
    work,
    config,
    ports: Object.fromEntries(HERD_NAMES.map((n, i) => [n, base + i])),
    secret: randomHex(32),
    // BENCH_KEEP_DIRS=1 keeps them, logs included, to look into a run afterwards.
    remove: () =>
      Deno.env.get("BENCH_KEEP_DIRS") === "1"
        ? Promise.resolve()
        : Deno.remove(work, { recursive: true }).catch(() => {}),
  };
}

/** How to run one `main.ts` child. */
export interface LaunchOptions {
  /** Keep records in `<work>/data` (the record log, servers/persist.ts) rather than in memory only. */
  persist?: boolean;
  /** Serve the dashboard on this port (default: `--no-dashboard`). */
  dashboardPort?: number;
  /** Places flags (default `--places offline`). */
  places?: string[];
  /** Extra environment (HERD_SECRET is always set). */
  env?: Record<string, string>;
  /** `deno run` flags before main.ts, e.g. `--inspect=127.0.0.1:PORT`. */
  denoFlags?: string[];
  /** Longest wait for the child's ready line. */
  readyMs?: number;
}

function mainArgs(dir: HerdDir, cmd: string[], o: LaunchOptions): string[] {
  return [
    "run",
    "-A",
    ...(o.denoFlags ?? []),
    "main.ts",
    ...cmd,
    "--config",
    dir.config,
    "--log-dir",
    `${dir.work}/logs`,
    ...(o.persist ? ["--data-dir", `${dir.work}/data`] : ["--memory"]),
    // Only `start` serves a dashboard (and takes its flags); `server` refuses them.
    ...(cmd[0] !== "start"
      ? []
      : o.dashboardPort !== undefined
      ? ["--dashboard-port", String(o.dashboardPort), "--dashboard-host", "127.0.0.1"]
      : ["--no-dashboard"]),
    ...(o.places ?? ["--places", "offline"]),
  ];
}

/** A running `main.ts start`. */
export interface StartedHerd {
  dir: HerdDir;
  proc: Proc;
  pid: number;
  /** Stops the process (SIGTERM, then SIGKILL after 2 s); the dir stays for the caller. */
  stop(): Promise<void>;
}

/**
 * Runs `main.ts start` (all five servers in one process) and waits for its ready line (the
 * dashboard's when it serves one) and for every port.
 */
export async function launchStart(
  dir: HerdDir,
  logFile: string,
  o: LaunchOptions = {},
): Promise<StartedHerd> {
  const proc = await startProcess(Deno.execPath(), mainArgs(dir, ["start"], o), logFile, {
    ready: o.dashboardPort !== undefined ? /^Dashboard: / : /^Logs: /,
    readyMs: o.readyMs ?? 60_000,
    env: { HERD_SECRET: dir.secret, ...o.env },
  });
  if (!(await waitForPorts(Object.values(dir.ports), 10_000))) {
    await proc.stop();
    throw new Error(`herd ports ${Object.values(dir.ports).join(",")} did not open`);
  }
  return {
    dir,
    proc,
    pid: proc.child.pid,
    stop: () => proc.stop(),
  };
}

/** Runs `main.ts server NAME` and waits for its ready line. */
export async function launchServer(
  dir: HerdDir,
  name: string,
  logFile: string,
  o: LaunchOptions = {},
): Promise<Proc> {
  return await startProcess(Deno.execPath(), mainArgs(dir, ["server", name], o), logFile, {
    ready: /^Logs: /,
    readyMs: o.readyMs ?? 60_000,
    env: { HERD_SECRET: dir.secret, ...o.env },
  });
}

/**
 * Waits until every named server answers an observer and has all its links to the other named
 * servers up; false after `timeoutMs`.
 */
export async function waitForHerdLinks(
  dir: HerdDir,
  names: string[],
  timeoutMs: number,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const states = await Promise.all(
      names.map((n) => serverState(dir.ports[n], n, dir.secret)),
    );
    if (
      states.every((s) => s !== null && s.links.every((l) => !names.includes(l.peer) || l.up))
    ) {
      return true;
    }
    await sleep(100);
  }
  return false;
}

/** Record counts of the named servers (null for one that did not answer). */
export async function recordCounts(
  dir: HerdDir,
  names: string[],
): Promise<Record<string, number | null>> {
  const states = await Promise.all(names.map((n) => serverState(dir.ports[n], n, dir.secret)));
  return Object.fromEntries(names.map((n, i) => [n, states[i]?.records ?? null]));
}

/**
 * Waits until every named server holds `target` records, or until the counts have not moved for
 * `stallMs` (records lost on the way: the caller reports the shortfall), or `timeoutMs`. Calls
 * `tick` with the counts at every poll.
 */
export async function waitForRecords(
  dir: HerdDir,
  names: string[],
  target: number,
  o: {
    pollMs: number;
    timeoutMs: number;
    stallMs: number;
    tick?: (counts: Record<string, number | null>) => void;
  },
): Promise<{ ok: boolean; counts: Record<string, number | null>; ms: number }> {
  const t0 = performance.now();
  let last = "";
  let lastChange = t0;
  while (true) {
    const counts = await recordCounts(dir, names);
    o.tick?.(counts);
    const values = Object.values(counts);
    if (values.every((v) => v !== null && v >= target)) {
      return { ok: true, counts, ms: Math.round(performance.now() - t0) };
    }
    const key = JSON.stringify(counts);
    const now = performance.now();
    if (key !== last) [last, lastChange] = [key, now];
    if (now - lastChange > o.stallMs || now - t0 > o.timeoutMs) {
      return { ok: false, counts, ms: Math.round(now - t0) };
    }
    await sleep(o.pollMs);
  }
}

/** Runs bench/bulk.ts as a child and returns its result line. */
export function runBulk(args: string[]): Promise<BulkResult> {
  return runJsonChild<BulkResult>(["run", "-A", "bench/bulk.ts", ...args], "bulk.ts");
}
