/**
 * A herd of real `main.ts server NAME` processes for tests: a temp dir with the config, the logs
 * and the data; start a server and wait for its "listening on" line; SIGKILL it; restart it.
 * Every wait is bounded, and `close()` kills whatever is still running and removes the dir.
 *
 * @module
 */

import { exchange } from "./net.ts";
import { seedNeighbors } from "../../servers/config.ts";
import { leasePorts } from "./ports.ts";
import { taskEnv, taskFlags } from "./task_flags.ts";

/** A finished command's exit code and its output as text. */
export function outputText(
  out: Deno.CommandOutput,
): { code: number; stdout: string; stderr: string } {
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** The seed's links (undirected), as neighbour lists. */
export const SEED_TOPOLOGY: Record<string, string[]> = seedNeighbors();

/** How long a process may take to print its "listening on" line (first runs compile and cache). */
const START_TIMEOUT_MS = 30_000;

/**
 * Ports that are free now, below the kernel's ephemeral range (the outgoing connections of tests
 * running in parallel cannot take them while a server is down), and leased so that no parallel
 * test file gets them too (see ports.ts).
 */
export function stablePorts(n: number): number[] {
  return leasePorts(n);
}

/**
 * The herd secret of a {@linkcode ProcessHerd} unless its options give another: one per test
 * process. The secret is what makes servers one herd, so test herds running side by side (deno
 * test --parallel) with one shared secret and the same server names could link to each other:
 * a server that remembers a neighbour's link port from an earlier run (link_port_memory.ts)
 * reached another test's server of that name on that port, and the two herds' records mixed.
 */
export const PROCS_SECRET = `procs-test-secret-${crypto.randomUUID()}`;

function assertNoUncaught(procs: readonly ServerProcess[]): void {
  for (const p of procs) {
    if (p.stderr.includes("Uncaught")) {
      throw new Error(`${p.name} printed an uncaught error: ${p.stderr.trim().slice(-2000)}`);
    }
  }
}

/** One running server process. */
export class ServerProcess {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  #drained: Promise<void>;
  #exited = false;

  constructor(name: string, child: Deno.ChildProcess) {
    this.name = name;
    this.child = child;
    const decoder = () => new TextDecoder();
    const drain = async (stream: ReadableStream<Uint8Array>, into: "stdout" | "stderr") => {
      const d = decoder();
      try {
        for await (const chunk of stream) this[into] += d.decode(chunk, { stream: true });
      } catch {
        // the process died mid-read
      }
    };
    this.#drained = Promise.all([drain(child.stdout, "stdout"), drain(child.stderr, "stderr")])
      .then(() => {});
    child.status.then(() => (this.#exited = true));
  }

  /** The process id. */
  get pid(): number {
    return this.child.pid;
  }

  /** True once the process has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** Waits until the server printed that it listens (throws with its stderr if it exits first). */
  async waitListening(ms = START_TIMEOUT_MS): Promise<void> {
    const deadline = performance.now() + ms;
    while (!this.stdout.includes(`${this.name} listening on`)) {
      if (this.#exited) {
        await this.#drained;
        throw new Error(
          `${this.name} exited before listening: ${this.stderr.trim() || this.stdout.trim()}`,
        );
      }
      if (performance.now() > deadline) {
        throw new Error(`${this.name} not listening after ${ms} ms: ${this.stderr.trim()}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** SIGKILL, then waits for the exit and the end of its output. */
  async kill(): Promise<void> {
    if (!this.#exited) {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
    await this.child.status;
    await this.#drained;
  }

  /** Resident set size in bytes (Linux /proc), or undefined when the process is gone. */
  async rss(): Promise<number | undefined> {
    try {
      const status = await Deno.readTextFile(`/proc/${this.pid}/status`);
      const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
      return m ? Number(m[1]) * 1024 : undefined;
    } catch {
      return undefined;
    }
  }
}

/** Options for a {@linkcode ProcessHerd}. */
export interface ProcessHerdOptions {
  /** Server → neighbours (undirected). Default: the seed's herd. */
  topology?: Record<string, string[]>;
  /** HERD_SECRET for every server unless {@linkcode ProcessHerdOptions.secretFor} says otherwise. */
  secret?: string;
  secretFor?: (name: string) => string;
  /** Extra environment for a server (e.g. `HERD_CLOCK_OFFSET_MS`). */
  env?: (name: string) => Record<string, string>;
  /** Extra flags for a server (e.g. `--memory`, `--whatsat-grace-ms 0`). */
  args?: (name: string) => string[];
  /**
   * "stub" (default): the legacy Google provider pointed at a closed port, which answers
   * `WHATSAT c R 0` (bound 0) at once without any request, and starts in a fraction of the time
   * "offline" takes to build its index (seconds on a loaded 2-core machine). "offline": the real
   * default provider.
   */
  places?: "stub" | "offline";
  /** The address a server listens on and is dialled at (default 127.0.0.1). */
  host?: (name: string) => string;
  /** A command that runs the server process, e.g. `["ip", "netns", "exec", NS]` (default none). */
  wrap?: (name: string) => string[];
}

/**
 * Real server processes of one herd, with their config, logs and data in a temp dir.
 *
 * @example
 * ```ts
 * const herd = await ProcessHerd.create();
 * try {
 *   await herd.startAll();
 *   await herd.kill("Hill");
 *   await herd.start("Hill");
 * } finally {
 *   await herd.close();
 * }
 * ```
 */
export class ProcessHerd {
  readonly dir: string;
  readonly configPath: string;
  readonly logDir: string;
  readonly dataDir: string;
  readonly topology: Record<string, string[]>;
  readonly names: string[];
  readonly ports: Map<string, number>;
  readonly procs: Map<string, ServerProcess> = new Map();
  /** Every process started, restarted ones included (their stderr is checked at close). */
  #started: ServerProcess[] = [];
  #opts: ProcessHerdOptions;

  private constructor(dir: string, opts: ProcessHerdOptions) {
    this.dir = dir;
    this.#opts = opts;
    this.topology = opts.topology ?? SEED_TOPOLOGY;
    this.names = Object.keys(this.topology);
    const ports = stablePorts(this.names.length);
    this.ports = new Map(this.names.map((n, i) => [n, ports[i]]));
    this.configPath = `${dir}/herd.json`;
    this.logDir = `${dir}/logs`;
    this.dataDir = `${dir}/data`;
  }

  /** Makes the temp dir and writes the config (no process starts yet). */
  static async create(opts: ProcessHerdOptions = {}): Promise<ProcessHerd> {
    const dir = await Deno.makeTempDir({ prefix: "herd-procs-" });
    const herd = new ProcessHerd(dir, opts);
    const servers: Record<string, { port: number; host: string; neighbors: string[] }> = {};
    for (const name of herd.names) {
      servers[name] = {
        port: herd.ports.get(name)!,
        host: herd.host(name),
        neighbors: herd.topology[name],
      };
    }
    await Deno.writeTextFile(herd.configPath, JSON.stringify({ servers }, null, 2));
    return herd;
  }

  /** A server's client port. */
  port(name: string): number {
    const port = this.ports.get(name);
    if (port === undefined) throw new Error(`no server ${name}`);
    return port;
  }

  /** A server's address. */
  host(name: string): string {
    return this.#opts.host?.(name) ?? "127.0.0.1";
  }

  /** True while the server's process runs. */
  running(name: string): boolean {
    const p = this.procs.get(name);
    return p !== undefined && !p.exited;
  }

  /**
   * Writes a second config with the same servers and ports but no links (for starting servers
   * that must not reach each other); returns its path.
   */
  async writeIsolatedConfig(): Promise<string> {
    const servers: Record<string, { port: number; host: string }> = {};
    for (const name of this.names) servers[name] = { port: this.port(name), host: this.host(name) };
    const path = `${this.dir}/isolated.json`;
    await Deno.writeTextFile(path, JSON.stringify({ servers }, null, 2));
    return path;
  }

  /**
   * Starts one server (extra flags after the herd's own; `config` replaces the herd's config
   * file) and waits until it listens.
   */
  async start(
    name: string,
    extraArgs: string[] = [],
    config = this.configPath,
  ): Promise<ServerProcess> {
    const proc = await this.spawn(name, extraArgs, config);
    try {
      await proc.waitListening();
    } catch (err) {
      await proc.kill();
      throw err;
    }
    return proc;
  }

  /** {@linkcode ProcessHerd.start} without waiting for "listening on". */
  async spawn(
    name: string,
    extraArgs: string[] = [],
    config = this.configPath,
  ): Promise<ServerProcess> {
    if (this.running(name)) throw new Error(`${name} is already running`);
    // The `server` task's own permissions, widened only by this herd's dir and hosts.
    const hosts = [...new Set(this.names.map((n) => this.host(n)))];
    const own = [...(this.#opts.args?.(name) ?? []), ...extraArgs];
    // The herd's data dir unless the test keeps records elsewhere or in memory (main.ts refuses
    // `--memory` beside `--data-dir`).
    const store = own.includes("--memory") || own.includes("--data-dir")
      ? []
      : ["--data-dir", this.dataDir];
    // The herd's defaults, each unless the test gives that flag itself (a flag given twice is
    // refused).
    const unless = (flag: string, args: string[]) => (own.includes(flag) ? [] : args);
    const defaults = [
      ...unless("--config", ["--config", config]),
      ...unless("--log-dir", ["--log-dir", this.logDir]),
      ...unless(
        "--places",
        this.#opts.places === "offline"
          ? ["--places", "offline"]
          : ["--places", "legacy", "--places-url", "http://127.0.0.1:1"],
      ),
    ];
    const args = [
      "run",
      ...taskFlags("server", { net: hosts, write: [this.dir] }),
      "main.ts",
      "server",
      name,
      ...defaults,
      ...store,
      ...own,
    ];
    const secret = this.#opts.secretFor?.(name) ?? this.#opts.secret ?? PROCS_SECRET;
    const [cmd, ...prefix] = [...(this.#opts.wrap?.(name) ?? []), Deno.execPath()];
    const child = new Deno.Command(cmd, {
      args: [...prefix, ...args],
      cwd: new URL("../..", import.meta.url).pathname,
      env: {
        ...await taskEnv("server"),
        HERD_SECRET: secret,
        GOOGLE_PLACES_API_KEY: "procs-test-key",
        ...this.#opts.env?.(name),
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const proc = new ServerProcess(name, child);
    this.procs.set(name, proc);
    this.#started.push(proc);
    return proc;
  }

  /** Starts several servers at once (default: all). */
  async startAll(
    names: readonly string[] = this.names,
    extraArgs: string[] = [],
    config = this.configPath,
  ): Promise<void> {
    await Promise.all(names.map((n) => this.start(n, extraArgs, config)));
  }

  /** SIGKILLs one server and waits for it to be gone. */
  async kill(name: string): Promise<void> {
    await this.procs.get(name)?.kill();
  }

  /** SIGKILLs several servers at once (default: all). */
  async killAll(names: readonly string[] = this.names): Promise<void> {
    await Promise.all(names.map((n) => this.kill(n)));
  }

  /** SIGKILL, then start again with the same flags (plus `extraArgs`). */
  async restart(name: string, extraArgs: string[] = []): Promise<ServerProcess> {
    await this.kill(name);
    return await this.start(name, extraArgs);
  }

  /** The server's log file so far ("" when none yet). */
  async log(name: string): Promise<string> {
    try {
      return await Deno.readTextFile(`${this.logDir}/${name}.log`);
    } catch {
      return "";
    }
  }

  /**
   * The links of a server's current run as its log tells them (LINK UP / LINK DOWN lines after the
   * last "UP listening on"); logs are flushed every 50 ms.
   */
  async links(name: string): Promise<Map<string, boolean>> {
    const text = await this.log(name);
    const start = text.lastIndexOf(" UP listening on ");
    const state = new Map<string, boolean>(this.topology[name].map((p) => [p, false]));
    if (start === -1) return state;
    for (const m of text.slice(start).matchAll(/ LINK (UP|DOWN) (\S+) /g)) {
      state.set(m[2], m[1] === "UP");
    }
    return state;
  }

  /** When a server's current run started listening (its log's last UP line), or NaN. */
  async listeningSince(name: string): Promise<number> {
    const text = await this.log(name);
    const at = text.lastIndexOf(" UP listening on ");
    return at === -1 ? NaN : Date.parse(text.slice(text.lastIndexOf("\n", at) + 1, at));
  }

  /**
   * How long each link of a server took to come up, counted from when both of its ends
   * listened (their logs' UP lines; one machine, one clock); waits until every link to a running
   * peer is up. Only the server's log after `from` (its length before this run) counts.
   */
  async linkUpDelays(name: string, from = 0, ms = 10_000): Promise<Map<string, number>> {
    const deadline = performance.now() + ms;
    for (;;) {
      const text = (await this.log(name)).slice(from);
      const start = text.indexOf(" UP listening on ");
      const t0 = Date.parse(text.slice(text.lastIndexOf("\n", start) + 1, start));
      const ups = new Map<string, number>();
      for (const m of (start === -1 ? "" : text.slice(start)).matchAll(/\n(\S+) LINK UP (\S+) /g)) {
        if (!ups.has(m[2])) ups.set(m[2], Date.parse(m[1]));
      }
      const peers = this.topology[name].filter((p) => this.running(p));
      if (start !== -1 && peers.every((p) => ups.has(p))) {
        const delays = new Map<string, number>();
        for (const [peer, t] of ups) {
          const since = Math.max(t0, (await this.listeningSince(peer)) || t0);
          delays.set(peer, t - since);
        }
        return delays;
      }
      if (performance.now() > deadline) {
        throw new Error(`${name}: links not all up after ${ms} ms: ${[...ups.keys()]}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Waits until every link between running servers is up (by the logs of both ends). */
  async waitLinksUp(ms = 15_000): Promise<void> {
    const deadline = performance.now() + ms;
    for (;;) {
      const down: string[] = [];
      for (const name of this.names) {
        if (!this.running(name)) continue;
        const links = await this.links(name);
        for (const peer of this.topology[name]) {
          if (this.running(peer) && !links.get(peer)) down.push(`${name}-${peer}`);
        }
      }
      if (down.length === 0) return;
      if (performance.now() > deadline) {
        throw new Error(`links still down after ${ms} ms: ${down.join(", ")}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /**
   * Throws unless every server started is still running and none has printed an uncaught
   * error (an unhandled rejection ends a Deno process, so a dead server is the symptom).
   */
  assertHealthy(): void {
    for (const [name, proc] of this.procs) {
      if (proc.exited) throw new Error(`${name} exited: ${proc.stderr.trim().slice(-2000)}`);
    }
    assertNoUncaught(this.#started);
  }

  /**
   * Kills every process and removes the temp dir; throws when any process this herd ever ran
   * printed an uncaught error, so no process test can pass over a crash it did not look for.
   */
  async close(): Promise<void> {
    await Promise.all([...this.procs.values()].map((p) => p.kill()));
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    assertNoUncaught(this.#started);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** The survivors reachable from `from` through running servers only. */
export function reachable(
  topology: Record<string, string[]>,
  from: string,
  alive: (name: string) => boolean,
): Set<string> {
  const seen = new Set<string>([from]);
  const queue = [from];
  while (queue.length > 0) {
    const at = queue.shift()!;
    for (const n of topology[at]) {
      if (!seen.has(n) && alive(n)) {
        seen.add(n);
        queue.push(n);
      }
    }
  }
  return seen;
}

/** Sends an IAMAT on a fresh connection; returns the AT line (without LF). */
export async function iamat(
  port: number,
  client: string,
  location: string,
  time: string,
  hostname?: string,
): Promise<string> {
  const reply = await exchange(port, `IAMAT ${client} ${location} ${time}\n`, 3000, hostname);
  if (!reply.startsWith("AT ") || !reply.endsWith("\n")) {
    throw new Error(`IAMAT got ${JSON.stringify(reply)}`);
  }
  return reply.slice(0, -1);
}

/**
 * Asks one server about many clients on one pipelined connection (`WHATSAT c 10 0`: no Places
 * lookup). Returns, per client, the stored AT line, or undefined for `? ...`.
 */
export async function whatsatMany(
  port: number,
  clients: readonly string[],
  ms = 10_000,
  hostname?: string,
): Promise<Map<string, string | undefined>> {
  const text = await exchange(
    port,
    clients.map((c) => `WHATSAT ${c} 10 0\n`).join(""),
    ms,
    hostname,
  );
  const out = new Map<string, string | undefined>();
  let at = 0;
  for (const client of clients) {
    const lf = text.indexOf("\n", at);
    if (lf === -1) {
      throw new Error(
        `short answer from port ${port}: ${JSON.stringify(text.slice(at, at + 200))}`,
      );
    }
    const line = text.slice(at, lf);
    if (line === `? WHATSAT ${client} 10 0`) {
      out.set(client, undefined);
      at = lf + 1;
    } else if (line.startsWith("AT ") && line.split(" ")[3] === client) {
      const end = text.indexOf("}\n\n", lf);
      if (end === -1) {
        throw new Error(`unterminated WHATSAT reply: ${JSON.stringify(text.slice(at, at + 300))}`);
      }
      out.set(client, line);
      at = end + 3;
    } else {
      throw new Error(`unexpected reply for ${client}: ${JSON.stringify(line)}`);
    }
  }
  if (at !== text.length) {
    throw new Error(`extra bytes after replies: ${JSON.stringify(text.slice(at, at + 200))}`);
  }
  return out;
}

/** The AT line a server stores for a client, or undefined when it answers `?`. */
export async function whatsat(port: number, client: string): Promise<string | undefined> {
  return (await whatsatMany(port, [client])).get(client);
}

/**
 * Waits until every listed server answers every client with exactly the expected AT line;
 * returns how long it took. On timeout, the error names what was still missing.
 */
export async function waitKnown(
  herd: ProcessHerd,
  servers: readonly string[],
  expected: ReadonlyMap<string, string>,
  ms: number,
): Promise<number> {
  const started = performance.now();
  const clients = [...expected.keys()];
  let missing: string[] = [];
  for (;;) {
    missing = [];
    await Promise.all(servers.map(async (s) => {
      const got = await whatsatMany(herd.port(s), clients, 10_000, herd.host(s));
      for (const c of clients) {
        if (got.get(c) !== expected.get(c)) missing.push(`${s}:${c}=${got.get(c) ?? "?"}`);
      }
    }));
    if (missing.length === 0) return performance.now() - started;
    if (performance.now() - started > ms) {
      throw new Error(
        `after ${ms} ms, not known: ${missing.slice(0, 10).join("; ")} (${missing.length} in all)`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A command prefix (for {@linkcode ProcessHerdOptions.wrap}) that runs the server under
 * `ulimit -n limit`; exec keeps the pid the server's.
 */
export function underUlimit(limit: number): string[] {
  // HERD_OPEN_FILES as the deno.json task's shell sets it, after the limit (task_flags.ts).
  return [
    "bash",
    "-c",
    `ulimit -n ${limit} && export HERD_OPEN_FILES=$(ulimit -n) && exec "$0" "$@"`,
  ];
}
