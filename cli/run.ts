/**
 * `start` (every server of the herd in this process, plus the dashboard) and `server NAME` (one
 * server per process): flags → config → places → herd → logs → signals → graceful stop.
 *
 * @module
 */

import { ConfigError, herdSecret, loadConfig, type ServerConfig } from "../servers/config.ts";
import { generateSecret } from "../servers/auth.ts";
import { Herd } from "../servers/herd.ts";
import { openLogs } from "../servers/log.ts";
import { openLogPersistence } from "../servers/persist.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { outputBudget } from "../servers/output_budget.ts";
import {
  createPlacesProvider,
  describeProvider,
  type PlacesOptions,
} from "../servers/places/select.ts";
import {
  checkDashboardToken,
  checkListenHost,
  GOOGLE_ONLY,
  type HerdFlags,
  portsClaimed,
  refuseGiven,
  stateDir,
  UsageError,
} from "./flags.ts";
import { HerdMetrics } from "../servers/ops/metrics.ts";
import type { Ops, ServedOps } from "../servers/ops/app.ts";
import type { EarlyListener } from "./early_listen.ts";
import { onParentGone } from "./parent_watch.ts";
import { onHangup } from "./signals.ts";
import { uncaughtSoFar } from "./last_resort.ts";
import { VERSION } from "../servers/version.ts";
import { errText, oneLine } from "../servers/text.ts";
import { LinkPortMemory } from "../servers/link_port_memory.ts";
import { hostPort } from "../servers/http_host.ts";
import { warmOfflineIndex } from "../servers/places/offline.ts";
import { getHeapStatistics } from "node:v8";

/** The secret `server` falls back to without HERD_SECRET: anyone who reads this can join. */
const INSECURE_SECRET = "proxy-herd-insecure-default-secret";

/** What a run needs besides flags: hooks for the dashboard, kept out of the herd. */
export interface RunHooks {
  /** Called once the herd is up, with the process's ops state; returns a closer. */
  onStarted?(herd: Herd, flags: HerdFlags, ops: Ops): Promise<(() => Promise<void>) | undefined>;
}

/** What V8's heap limit holds besides records: its young generation (96 MiB) and our own. */
const HEAP_RESERVE = 128 * 1024 * 1024;

/**
 * The record budget in bytes: `--max-records-mib`, else half of what V8's heap limit leaves after
 * {@linkcode HEAP_RESERVE} (~2 GiB of a 4 GiB heap), so records, counted as record_table.ts does,
 * never take the heap to the limit, where V8 ends the whole process. Peers' records may reach a
 * quarter more (record_table.ts `RecordBudget`); the rest, over a third of the room, is for
 * everything else: lines, replies, copies of a record in flight, garbage awaiting collection.
 */
function recordBudgetBytes(mib: number | undefined): number {
  if (mib !== undefined) return mib * 1024 * 1024;
  const room = getHeapStatistics().heap_size_limit - HEAP_RESERVE;
  return Math.max(16 * 1024 * 1024, Math.floor(room / 2));
}

/**
 * Refuses, before anything starts, a directory or address that this process's permissions (the
 * deno.json task's, scoped) do not cover, or a directory it cannot make: one line naming the
 * flag or server, not a failure half-way through start-up.
 */
function checkAccess(flags: HerdFlags, servers: readonly ServerConfig[]): void {
  const denied = (d: Deno.PermissionDescriptor) =>
    Deno.permissions.querySync(d).state !== "granted";
  const dirs: [string, string][] = [["--log-dir", flags.logDir]];
  if (flags.dataDir !== "") dirs.push(["--data-dir", flags.dataDir]);
  for (const [flag, dir] of dirs) {
    if (denied({ name: "write", path: dir })) {
      throw new UsageError(
        `${flag} ${dir}: no write permission (the task may write only its own dirs; ` +
          `run deno run --allow-write=${dir} ... main.ts, see README)`,
      );
    }
    // Made here, so a path that cannot be a directory (a file, a file's child) is one line
    // naming the flag, not an uncaught error half-way through start-up.
    try {
      Deno.mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw new UsageError(`${flag} ${dir}: cannot use it as a directory: ${errText(err)}`);
    }
    // A dir that exists but takes no file (sysfs, a read-only mount, no permission in it).
    try {
      Deno.removeSync(Deno.makeTempFileSync({ dir, prefix: ".herd-probe-" }));
    } catch (err) {
      throw new UsageError(`${flag} ${dir}: cannot write in it: ${errText(err)}`);
    }
  }
  for (const s of servers) {
    for (const port of [s.port, s.linkPort ?? s.port]) {
      // In brackets for IPv6: the descriptor takes `[::1]:12000`, and throws on `::1:12000`.
      let no: boolean;
      try {
        no = denied({ name: "net", host: hostPort(s.host, port) });
      } catch (err) {
        throw new UsageError(`server ${s.name}: host ${s.host} is not an address: ${errText(err)}`);
      }
      if (no) {
        throw new UsageError(
          `server ${s.name}: no net permission for ${s.host} (the task grants loopback and ` +
            `wildcard addresses only; run deno run --allow-net=${s.host},... main.ts, see README)`,
        );
      }
    }
  }
}

/**
 * Runs a herd until SIGINT or SIGTERM; returns the exit status. `early`: the client port `server`
 * opened before loading this module (cli/early_listen.ts), taken by the server if the validated
 * config names its address, else closed.
 *
 * @example
 * ```ts
 * import { parseHerdFlags } from "./flags.ts";
 *
 * Deno.exit(await runHerd("start", parseHerdFlags(Deno.args)));
 * ```
 */
export async function runHerd(
  mode: "start" | "server",
  flags: HerdFlags,
  hooks: RunHooks = {},
  early?: EarlyListener,
): Promise<number> {
  try {
    return await run(mode, flags, hooks, early);
  } finally {
    early?.close(); // not taken (another address, or the run failed before listening)
  }
}

async function run(
  mode: "start" | "server",
  flags: HerdFlags,
  hooks: RunHooks,
  early: EarlyListener | undefined,
): Promise<number> {
  const config = await loadConfig(flags.config, early?.configText);
  let only: string[] | undefined;
  if (mode === "server") {
    if (flags.positionals.length !== 1) {
      throw new UsageError("server needs exactly one server NAME, e.g. deno task server Hill");
    }
    const name = flags.positionals[0];
    if (!config.servers.some((s) => s.name === name)) {
      const names = config.servers.map((s) => s.name).join(", ");
      throw new ConfigError(`no server named ${name} in the config (servers: ${names})`);
    }
    only = [name];
  } else if (flags.positionals.length > 0) {
    throw new UsageError(`start takes no arguments, got ${JSON.stringify(flags.positionals[0])}`);
  }

  // The servers this process runs, and the neighbours they dial.
  const mine = config.servers.filter((s) => only === undefined || only.includes(s.name));
  const dialled = new Set(mine.flatMap((s) => [s.name, ...s.neighbors]));
  checkAccess(flags, config.servers.filter((s) => dialled.has(s.name)));

  let secret = herdSecret(Deno.env.get("HERD_SECRET"), config.secret);
  if (mode === "start") checkDashboardToken();
  // A config host nothing can listen on is the config's error (exit 2), found before any server
  // of this process listens, not after the ones before it came up (exit 1).
  for (const host of new Set(mine.map((s) => s.host))) {
    const named = mine.filter((s) => s.host === host).map((s) => s.name).join(", ");
    checkListenHost(`config: server ${named}: host`, host);
  }
  if (mode === "start" && flags.dashboard) checkListenHost("--dashboard-host", flags.dashboardHost);
  if (flags.opsPort !== undefined) checkListenHost("--ops-host", flags.opsHost);

  const placesOpts: PlacesOptions = {
    places: flags.places,
    apiKey: Deno.env.get("GOOGLE_PLACES_API_KEY"),
    baseUrl: flags.placesUrl,
    timeoutMs: flags.placesTimeoutMs,
    concurrency: flags.placesConcurrency,
    cacheTtlSeconds: flags.placesCacheTtl,
  };
  let places;
  let placesLine;
  try {
    places = createPlacesProvider(placesOpts);
    placesLine = describeProvider(placesOpts);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (places.name === "offline") {
    refuseGiven(flags, GOOGLE_ONLY, "the offline provider is in use (no GOOGLE_PLACES_API_KEY)");
    // Read from (or built and kept in) the state dir; `server` started it already (main.ts), and
    // the provider's own warm in Herd.start shares this one.
    warmOfflineIndex(stateDir(flags)).catch(() => {});
  }

  // After every check of the flags: a usage error is one line, not this warning and the error.
  if (!secret) {
    if (mode === "start") {
      secret = generateSecret();
    } else {
      console.error(
        'WARNING: no herd secret (set HERD_SECRET or "secret" in the config). Using a built-in ' +
          "default that is public: anyone who can reach these ports can join the herd.",
      );
      secret = INSECURE_SECRET;
    }
  }

  // A `server` process keeps its plain link port across restarts, and its neighbours' (read by
  // the early listener when it opened the link port).
  const linkPorts = only === undefined ? undefined : early?.linkPorts ??
    LinkPortMemory.open(stateDir(flags), only[0], flags.config, portsClaimed(flags));
  // Process-wide, like the descriptor budget: every server here shares it.
  outputBudget.bytes = flags.replyBudgetMib * 1024 * 1024;
  const herd = new Herd(config, {
    ...SERVER_DEFAULTS,
    partialLineMs: flags.partialLineMs,
    idleTimeoutMs: flags.idleTimeoutMs,
    maxConnections: flags.maxConnections,
    maxPendingReplies: flags.maxPendingReplies,
    whatsatGraceMs: flags.whatsatGraceMs,
    maxFutureS: flags.maxFutureS,
    receiptWaitMs: flags.receiptWaitMs,
    maxRecordBytes: recordBudgetBytes(flags.maxRecordsMib),
    syncAck: flags.syncAck,
    tcpLinks: flags.tcpLinks,
    floodTrees: !flags.fullFlood,
    places,
    secret,
    only,
    listen: early === undefined ? undefined : (addr) => early.take(addr) ?? Deno.listen(addr),
    listenLink: early === undefined
      ? undefined
      : (addr) => early.takeLink(addr) ?? Deno.listen(addr),
    linkPorts: linkPorts === undefined ? undefined : () => linkPorts,
    openPersistence: flags.dataDir === ""
      ? undefined
      : (name) => openLogPersistence(flags.dataDir, name),
  });
  // One metrics registry for the process, counting from the first event.
  const metrics = new HerdMetrics(herd, { version: VERSION, processMetrics: true });
  const ops: Ops = {
    source: herd,
    metrics,
    version: VERSION,
    startedAt: Date.now(),
    startedMono: performance.now(),
    uncaught: uncaughtSoFar,
  };
  herd.exportMetrics((name) => metrics.exportServer(name));
  const logs = await openLogs(herd.bus, flags.logDir, [...herd.servers.keys()], {
    format: flags.logFormat,
  });
  // The signals are listened for before the servers listen: clients, logrotate and operators may
  // come before "listening" (the servers answer while start waits for the Places index), and the
  // signals' default action kills. A stop asked for during start frees the ports at once (the
  // early listener's and the servers') and ends the start (it no longer waits for a store's load
  // or the Places index); then the normal stop runs for whatever had started.
  let stopAsked = false;
  const stopped = new Promise<void>((resolve) => {
    const stop = () => {
      stopAsked = true;
      early?.close();
      herd.cancelStart();
      resolve();
    };
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
    onParentGone(stop); // the `deno task` runner was killed (cli/parent_watch.ts)
  });
  // logrotate renames the files, then sends SIGHUP: new lines go to new files at the old paths
  // (one that came before the logs were open reopens them now: cli/signals.ts).
  onHangup(() => logs.reopen());
  const closeLogs = async () => {
    onHangup(undefined);
    await logs.close();
  };
  const stopHerd = async () => {
    await herd.stop();
    await linkPorts?.flush();
    await closeLogs();
    return 0;
  };
  try {
    await herd.start();
  } catch (err) {
    await closeLogs();
    console.error(oneLine((err as Error).message));
    return 1;
  }
  // In one process every neighbour is local: report ready once the links are up (bounded).
  const deadline = performance.now() + 3000;
  const local = (peer: string) => herd.servers.has(peer);
  while (
    !stopAsked && performance.now() < deadline &&
    [...herd.servers.values()].some((s) => s.links.some((l) => local(l.peer) && !l.up))
  ) {
    await new Promise((r) => setTimeout(r, 10));
  }
  if (stopAsked) {
    console.log("Stopping...");
    return await stopHerd();
  }
  // Before "listening": whoever waits for that line can scrape at once.
  let opsServed: ServedOps | undefined;
  if (flags.opsPort !== undefined) {
    try {
      // Hono is loaded only for an ops port (not before the client port listens).
      const { serveOps } = await import("../servers/ops/app.ts");
      opsServed = serveOps(ops, flags.opsHost, flags.opsPort);
    } catch (err) {
      console.error(oneLine((err as Error).message));
      await herd.stop();
      await closeLogs();
      return 1;
    }
  }
  for (const s of herd.servers.values()) {
    console.log(
      `${s.name} listening on ${hostPort(s.host, s.port)} (neighbours: ${
        s.links.map((l) => l.peer).join(", ") || "none"
      })`,
    );
  }
  console.log(`Places: ${placesLine}`);
  console.log(
    `Logs: ${flags.logDir}/  Records: ${
      flags.dataDir === "" ? "in memory only" : `${flags.dataDir}/`
    }`,
  );
  let closeDashboard: (() => Promise<void>) | undefined;
  try {
    if (opsServed !== undefined) console.log(`Ops: ${opsServed.url}/metrics /healthz /status`);
    closeDashboard = await hooks.onStarted?.(herd, flags, ops);
  } catch (err) {
    console.error(oneLine((err as Error).message));
    await opsServed?.close();
    await herd.stop();
    await closeLogs();
    return 1;
  }

  await stopped;
  console.log("Stopping...");
  await closeDashboard?.();
  await opsServed?.close();
  return await stopHerd();
}
