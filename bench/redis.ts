/**
 * Replicated Redis, what a user would run instead of our herd: Debian's `redis-server` as a
 * primary and four replicas on loopback, each with `appendonly yes`, `appendfsync everysec` and
 * its own temp dir, so five nodes hold every location, as the herd's five servers do.
 *
 * - {@linkcode ensureRedis}: finds `redis-server`, or installs it with apt when it can (root), else
 *   says so LOUDLY (and fails under `CI=true`).
 * - {@linkcode startReplicatedRedis}: the five nodes, replication up.
 * - {@linkcode redisMemory}: RSS of the five with N GEOADD members (the herd's 1M clients × 5).
 * - {@linkcode redisCatchup}: a replica restarted empty, until its link is up and it holds all N.
 * - {@linkcode redisResync}: the five nodes started, N members loaded, one replica's resync, all
 *   stopped: the catch-up part's Redis figure, measured in the same run beside ours.
 *
 * The primary runs with `repl-diskless-sync-delay 0`: Redis's default waits 5 s for more replicas
 * before a full sync, which would be counted against Redis in the catch-up figure.
 *
 * @module
 */

import { loudly } from "./native.ts";
import {
  freePortBase,
  loadavg,
  mib,
  type Proc,
  processMemory,
  progress,
  sleep,
  startProcess,
} from "./common.ts";

/** One redis-server process. */
interface RedisNode {
  name: string;
  port: number;
  dir: string;
  args: string[];
  proc: Proc;
}

/** A running primary with its replicas. */
export interface ReplicatedRedis {
  primary: RedisNode;
  replicas: RedisNode[];
  /** `redis-cli -p port args...`'s output, trimmed. */
  cli(port: number, ...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

/** Redis's RSS with N members on every node. */
export interface RedisMemoryReport {
  members: number;
  /** Sum of VmRSS over the five nodes, bytes, before and after the load. */
  rssBefore: number;
  rssAfter: number;
  /** Per node, after, bytes. */
  perNode: Record<string, number>;
  /** Loading on the primary until every replica held them all, ms. */
  loadMs: number;
}

/** A replica restarted with an empty dir catching up on N members. */
export interface RedisCatchupReport {
  members: number;
  /** Spawn until `master_link_status:up`, ms (null: never). */
  linkUpMs: number | null;
  /** Spawn until its ZCARD equals the primary's, ms (null: never within the bound). */
  totalMs: number | null;
  held: number;
}

const KEY = "geo";

async function has(cmd: string): Promise<boolean> {
  try {
    return (await new Deno.Command(cmd, { args: ["--version"], stdout: "null", stderr: "null" })
      .output()).success;
  } catch {
    return false;
  }
}

/**
 * True when `redis-server` and `redis-cli` are on PATH, installing Debian's `redis-server` with
 * apt first when they are not and this process is root. False (said loudly; an error under
 * `CI=true`) when Redis cannot be had.
 */
export async function ensureRedis(): Promise<boolean> {
  if (await has("redis-server") && await has("redis-cli")) return true;
  if (Deno.uid() === 0 && await has("apt-get")) {
    progress("[redis] redis-server missing: apt-get install redis-server");
    const env = { DEBIAN_FRONTEND: "noninteractive" };
    const install = () =>
      new Deno.Command("apt-get", {
        args: ["install", "-y", "-qq", "redis-server"],
        env,
        stdout: "null",
        stderr: "piped",
      }).output();
    let out = await install();
    if (!out.success) {
      await new Deno.Command("apt-get", { args: ["update", "-qq"], env, stdout: "null" }).output();
      out = await install();
    }
    if (out.success && await has("redis-server") && await has("redis-cli")) return true;
  }
  loudly(
    "redis-server is missing and could not be installed (apt-get install redis-server as root): " +
      "the replicated Redis rows are SKIPPED",
  );
  return false;
}

async function cli(port: number, ...args: string[]): Promise<string> {
  const out = await new Deno.Command("redis-cli", {
    args: ["-h", "127.0.0.1", "-p", String(port), ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).trim();
}

/** `INFO replication` as key → value. */
async function replicationInfo(port: number): Promise<Record<string, string>> {
  const text = await cli(port, "INFO", "replication");
  return Object.fromEntries(
    text.split(/\r?\n/).flatMap((l) => {
      const i = l.indexOf(":");
      return i > 0 ? [[l.slice(0, i), l.slice(i + 1)]] : [];
    }),
  );
}

async function startNode(node: Omit<RedisNode, "proc">, logDir: string): Promise<RedisNode> {
  const proc = await startProcess("redis-server", node.args, `${logDir}/redis-${node.name}.log`, {
    ready: /Ready to accept connections/,
    readyMs: 30_000,
  });
  return { ...node, proc };
}

/** Starts the primary and `replicas` replicas and waits until every replica is online. */
export async function startReplicatedRedis(
  logDir: string,
  replicas = 4,
): Promise<ReplicatedRedis> {
  const base = freePortBase(replicas + 1, 26000);
  const nodes: RedisNode[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((n) => n.proc.stop()));
    for (const n of nodes) await Deno.remove(n.dir, { recursive: true }).catch(() => {});
  };
  try {
    for (let i = 0; i <= replicas; i++) {
      const port = base + i;
      const dir = await Deno.makeTempDir({ prefix: "herd-bench-redis-" });
      const args = [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        dir,
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--daemonize",
        "no",
        "--logfile",
        "",
        ...(i === 0
          ? ["--repl-diskless-sync-delay", "0"]
          : ["--replicaof", "127.0.0.1", String(base)]),
      ];
      nodes.push(
        await startNode({ name: i === 0 ? "primary" : `replica${i}`, port, dir, args }, logDir),
      );
    }
    const deadline = Date.now() + 30_000;
    while (true) {
      const info = await replicationInfo(base);
      const online = Object.entries(info).filter(([k, v]) =>
        /^slave\d+$/.test(k) && v.includes("state=online")
      ).length;
      if (online === replicas) break;
      if (Date.now() > deadline) throw new Error(`only ${online} of ${replicas} replicas online`);
      await sleep(100);
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { primary: nodes[0], replicas: nodes.slice(1), cli, stop };
}

/** ZCARD of the geo key on a node (-1 when it does not answer). */
async function zcard(port: number): Promise<number> {
  const v = Number(await cli(port, "ZCARD", KEY));
  return Number.isFinite(v) ? v : -1;
}

/**
 * Loads `members` members ({@linkcode loadMembers}) into the five nodes and reads their RSS 2 s
 * after every replica holds them (as the herd's memory figure is).
 */
export async function redisMemory(r: ReplicatedRedis, members: number): Promise<RedisMemoryReport> {
  const nodes = [r.primary, ...r.replicas];
  await cli(r.primary.port, "FLUSHALL");
  await sleep(500);
  const rss = () => nodes.map((n) => processMemory(n.proc.child.pid)?.rss ?? 0);
  const rssBefore = rss().reduce((a, b) => a + b, 0);
  const loadMs = await loadMembers(r, members);
  await sleep(2000);
  const after = rss();
  progress(`[redis] ${members} members x5: ${mib(after.reduce((a, b) => a + b, 0))} MiB RSS`);
  return {
    members,
    rssBefore,
    rssAfter: after.reduce((a, b) => a + b, 0),
    perNode: Object.fromEntries(nodes.map((n, i) => [n.name, after[i]])),
    loadMs,
  };
}

/**
 * Loads `members` GEOADD members (`m<i>.bench.example`, the herd's bulk client names, at distinct
 * locations) on the primary, in server-side loops of 50,000, and waits until every replica holds
 * them: the ms that took.
 */
async function loadMembers(r: ReplicatedRedis, members: number): Promise<number> {
  const nodes = [r.primary, ...r.replicas];
  const script = "local b, n = tonumber(ARGV[1]), tonumber(ARGV[2]) " +
    "for i = b, b + n - 1 do redis.call('GEOADD', KEYS[1], -120 + (i % 100000) / 10000, " +
    "30 + math.floor(i / 100000) / 100, 'm' .. i .. '.bench.example') end return n";
  const t0 = performance.now();
  const chunk = 50_000;
  for (let b = 0; b < members; b += chunk) {
    const n = Math.min(chunk, members - b);
    const out = await cli(r.primary.port, "EVAL", script, "1", KEY, String(b), String(n));
    if (out !== String(n)) throw new Error(`redis EVAL load failed: ${out.slice(0, 200)}`);
  }
  const deadline = performance.now() + 120_000;
  while (true) {
    const counts = await Promise.all(nodes.map((n) => zcard(n.port)));
    if (counts.every((c) => c === members)) break;
    if (performance.now() > deadline) throw new Error(`replicas hold ${counts.join(", ")}`);
    await sleep(100);
  }
  return Math.round(performance.now() - t0);
}

/**
 * Stops the last replica, empties its dir (AOF and all) and starts it again: the time from spawn
 * until its link to the primary is up and it holds as many members as the primary. Run after
 * {@linkcode redisMemory} so the primary holds the members.
 */
export async function redisCatchup(
  r: ReplicatedRedis,
  logDir: string,
): Promise<RedisCatchupReport> {
  const victim = r.replicas[r.replicas.length - 1];
  const members = await zcard(r.primary.port);
  await victim.proc.stop();
  for await (const e of Deno.readDir(victim.dir)) {
    await Deno.remove(`${victim.dir}/${e.name}`, { recursive: true });
  }
  const t0 = performance.now();
  const restarted = await startNode(victim, logDir);
  r.replicas[r.replicas.length - 1] = restarted;
  let linkUpMs: number | null = null;
  let held = 0;
  const deadline = t0 + 120_000;
  while (performance.now() < deadline) {
    if (linkUpMs === null) {
      const info = await replicationInfo(victim.port);
      if (info.master_link_status === "up") linkUpMs = Math.round(performance.now() - t0);
    }
    if (linkUpMs !== null) {
      held = await zcard(victim.port);
      if (held === members) {
        return { members, linkUpMs, totalMs: Math.round(performance.now() - t0), held };
      }
    }
    await sleep(20);
  }
  return { members, linkUpMs, totalMs: null, held };
}

/** {@linkcode redisResync}'s figure: the replica's resync, with the box's load around it. */
export interface RedisResyncReport extends RedisCatchupReport {
  /** Loading the members on the primary until every replica held them, ms. */
  loadMs: number;
  loadavgStart: number;
  loadavgEnd: number;
}

/**
 * The catch-up part's Redis figure (issue 13: our catch-up of N missed records "≤ a Redis
 * replica's resync in the same run"): a primary and four replicas started, `members` members
 * loaded, the last replica restarted empty ({@linkcode redisCatchup}), all stopped. Throws when
 * Redis cannot be had (after {@linkcode ensureRedis} has said so loudly).
 */
export async function redisResync(logDir: string, members: number): Promise<RedisResyncReport> {
  const loadavgStart = loadavg();
  if (!(await ensureRedis())) throw new Error("redis-server missing: the Redis resync is SKIPPED");
  const r = await startReplicatedRedis(logDir);
  try {
    progress(`[catchup] Redis: ${members} members on five nodes, then a replica restarted empty`);
    const loadMs = await loadMembers(r, members);
    const c = await redisCatchup(r, logDir);
    progress(
      `[catchup] Redis replica resync of ${c.members}: ${
        c.totalMs === null ? `not done (held ${c.held})` : `${c.totalMs} ms`
      } (link up ${c.linkUpMs} ms)`,
    );
    return { ...c, loadMs, loadavgStart, loadavgEnd: loadavg() };
  } finally {
    await r.stop();
  }
}
