/**
 * Test helpers for talking to servers over real TCP on loopback, and for starting herds on free
 * ports. Every wait here is bounded.
 *
 * @module
 */

import { type HerdConfig, parseConfig, seedConfigJson } from "../../servers/config.ts";
import { Herd, type HerdOptions } from "../../servers/herd.ts";
import { SERVER_DEFAULTS } from "../../servers/options.ts";
import { createOfflineProvider } from "../../servers/places/offline.ts";
import { binaryToBytes, bytesToBinary } from "../../servers/lines.ts";
import { leasePorts } from "./ports.ts";
import { closeQuietly } from "../../servers/io.ts";

/** Ports free now, leased so that no parallel test file gets them too (see ports.ts). */
export function freePorts(n: number): number[] {
  return leasePorts(n);
}

/** The seed's topology on the given ports (Hill, Jaquez, Smith, Campbell, Singleton). */
export function seedConfig(ports: number[], secret?: string): HerdConfig {
  return parseConfig({ ...seedConfigJson(ports), secret });
}

/** A running in-process herd for a test (`await using` stops it). */
export interface TestHerd extends AsyncDisposable {
  herd: Herd;
  config: HerdConfig;
  port(name: string): number;
  close(): Promise<void>;
}

/**
 * Starts the seed herd on free ports (or `config`), in this process, with the offline Places
 * index, and waits until every link is up. Its links run in memory unless `tcpLinks`.
 */
export async function startSeedHerd(
  overrides: Partial<HerdOptions> = {},
  config: HerdConfig = seedConfig(freePorts(5)),
): Promise<TestHerd> {
  const herd = new Herd(config, {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: "test-secret-0123456789",
    ...overrides,
  });
  await herd.start();
  await waitFor(
    () => herd.snapshot().servers.every((s) => s.links.every((l) => l.up)),
    20_000, // a bound, not a wait: on a loaded box five servers take seconds to link
    "links up",
  );
  return {
    herd,
    config,
    port: (name) => config.servers.find((s) => s.name === name)!.port,
    close: () => herd.stop(),
    [Symbol.asyncDispose]: () => herd.stop(),
  };
}

/** Polls `check` every 10 ms until true; throws after `ms`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** True once a remote dashboard (`RemoteHerd`) watches every server it knows of. */
export function allWatching(remote: { status(): Record<string, { status: string }> }): boolean {
  return Object.values(remote.status()).every((s) => s.status === "watching");
}

/**
 * A raw TCP client that reads into a buffer, so tests can wait for exact byte counts or
 * terminators with a deadline.
 */
export class TcpClient {
  conn: Deno.TcpConn;
  #buf = "";
  #eof = false;
  #reading: Promise<void>;
  #wake: (() => void) | undefined;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.#reading = this.#readLoop();
  }

  /** Connects to hostname:port (default loopback). */
  static async connect(port: number, hostname = "127.0.0.1"): Promise<TcpClient> {
    return new TcpClient(await Deno.connect({ hostname, port }));
  }

  async #readLoop(): Promise<void> {
    const buf = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        this.#buf += bytesToBinary(buf.subarray(0, n));
        this.#wake?.();
      }
    } catch {
      // reset
    }
    this.#eof = true;
    this.#wake?.();
  }

  /** Sends a binary string (or bytes) as is. */
  async send(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? binaryToBytes(data) : data;
    let off = 0;
    while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
  }

  /** Everything received so far (binary string). */
  get received(): string {
    return this.#buf;
  }

  /** True once the server closed its side. */
  get eof(): boolean {
    return this.#eof;
  }

  /** Waits until `pred(received)` holds, the server closes, or `ms` pass (then throws). */
  async waitUntil(pred: (received: string) => boolean, ms = 3000): Promise<string> {
    const deadline = performance.now() + ms;
    while (!pred(this.#buf)) {
      if (this.#eof) {
        throw new Error(`connection closed; received ${JSON.stringify(this.#buf.slice(-300))}`);
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new Error(`timed out; received ${JSON.stringify(this.#buf.slice(-300))}`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.#wake = undefined;
    }
    return this.#buf;
  }

  /** Waits for `n` complete replies, where a reply ends at LF, or at LF LF after a WHATSAT's JSON. */
  async replies(n: number, ms = 3000): Promise<string[]> {
    let out: string[] = [];
    await this.waitUntil((text) => {
      out = splitReplies(text);
      return out.length >= n;
    }, ms);
    return out.slice(0, n);
  }

  /** Waits for the server to close the connection. */
  async waitEof(ms = 3000): Promise<string> {
    await this.waitUntil(() => this.#eof, ms).catch((err) => {
      if (!this.#eof) throw err;
    });
    return this.#buf;
  }

  /** Closes our side. */
  async close(): Promise<void> {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
    await this.#reading;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Splits a stream of replies: AT/? lines end at LF; an AT line followed by `{` runs to `}\n\n`. */
export function splitReplies(text: string): string[] {
  const out: string[] = [];
  let at = 0;
  while (at < text.length) {
    const lf = text.indexOf("\n", at);
    if (lf === -1) break;
    if (text[lf + 1] === "{") {
      const end = text.indexOf("}\n\n", lf);
      if (end === -1) break;
      out.push(text.slice(at, end + 3));
      at = end + 3;
    } else {
      out.push(text.slice(at, lf + 1));
      at = lf + 1;
    }
  }
  return out;
}

/** Sends one command on a fresh connection, half-closes, and returns everything until EOF. */
export async function exchange(
  port: number,
  data: string,
  ms = 3000,
  hostname = "127.0.0.1",
): Promise<string> {
  const c = await TcpClient.connect(port, hostname);
  try {
    await c.send(data);
    await c.conn.closeWrite();
    return await c.waitEof(ms);
  } finally {
    // Also when the server died mid-exchange, so no socket outlives the call.
    await c.close();
  }
}

/** A client time `offsetMs` from now, as IAMAT sends it (seconds with nine decimals). */
export function clientTime(offsetMs = 0): string {
  const ms = Date.now() + offsetMs;
  return `${Math.floor(ms / 1000)}.${String(ms % 1000).padStart(3, "0")}000000`;
}

/** One IPv4 TCP socket of this network namespace, as /proc/net/tcp shows it. */
export interface TcpSocket {
  /** The kernel's state code, hex as in the file (`01` ESTABLISHED, `06` TIME-WAIT, ...). */
  state: string;
  /** Bytes sent and not yet acknowledged. */
  tx: number;
  /** Bytes received and not yet read by the process. */
  rx: number;
}

/**
 * Every IPv4 TCP socket of this network namespace by `"<local port>><remote port>"` (loopback
 * tests: both ends of a connection are there), from /proc/net/tcp.
 */
export function tcpSockets(): Map<string, TcpSocket> {
  const out = new Map<string, TcpSocket>();
  for (const f of tcpRows(["/proc/net/tcp"])) {
    const [tx, rx] = f[4].split(":").map((h) => parseInt(h, 16));
    out.set(`${rowPort(f[1])}>${rowPort(f[2])}`, { state: f[3], tx, rx });
  }
  return out;
}

/** The fields of each socket row of these /proc/net/tcp* files (a file that is missing: none). */
function* tcpRows(files: string[]): Generator<string[]> {
  for (const file of files) {
    let text = "";
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 10) yield f;
    }
  }
}

/** The port of a /proc/net/tcp address (`0100007F:1F90`, or a v6 one). */
function rowPort(addr: string): number {
  return parseInt(addr.split(":").pop()!, 16);
}

/**
 * The pids of the processes holding a TCP socket whose local OR remote port is `port`: what
 * `lsof -ti:PORT` lists, and so what the CS 131 TA grading script kills to stop one server
 * (`lsof -ti:PORT | xargs kill`). From /proc/net/tcp{,6} and /proc/PID/fd (no lsof needed).
 */
export function portHolders(port: number): Set<number> {
  const inodes = new Set<string>();
  for (const f of tcpRows(["/proc/net/tcp", "/proc/net/tcp6"])) {
    // A socket in TIME-WAIT (inode 0) belongs to no process.
    if (f[9] !== "0" && (rowPort(f[1]) === port || rowPort(f[2]) === port)) inodes.add(f[9]);
  }
  const pids = new Set<number>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      for (const fd of Deno.readDirSync(`/proc/${entry.name}/fd`)) {
        const target = Deno.readLinkSync(`/proc/${entry.name}/fd/${fd.name}`);
        const m = /^socket:\[(\d+)\]$/.exec(target);
        if (m !== null && inodes.has(m[1])) pids.add(Number(entry.name));
      }
    } catch {
      // the process (or the descriptor) went while we looked
    }
  }
  return pids;
}

/** One line from `conn` (without LF), or undefined at EOF; bounded by `ms`. */
export async function readLine(conn: Deno.Conn, ms = 5000): Promise<string | undefined> {
  const timer = setTimeout(() => closeQuietly(conn), ms);
  const bytes: number[] = [];
  const buf = new Uint8Array(1);
  try {
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) return undefined;
      if (buf[0] === 0x0a) return String.fromCharCode(...bytes);
      bytes.push(buf[0]);
    }
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Plays a server's client port for link and observer dials only: answers each
 * `HERD2 LINKPORT <name>` question with `linkPort` and closes (servers/link_port.ts), so that a
 * test sends a server's dials where it likes (its own listener, a proxy). Anything else is
 * closed unanswered.
 */
export function linkPortFront(port: number, name: string, linkPort: number): { close(): void } {
  const front = Deno.listen({ hostname: "127.0.0.1", port });
  const answer = binaryToBytes(`HERD2 LINKPORT ${name} ${linkPort}\n`);
  const serve = async (conn: Deno.Conn) => {
    const buf = new Uint8Array(1024);
    let text = "";
    while (!text.includes("\n")) {
      const n = await conn.read(buf);
      if (n === null) return;
      text += bytesToBinary(buf.subarray(0, n));
    }
    if (text === `HERD2 LINKPORT ${name}\n`) await conn.write(answer);
  };
  (async () => {
    for await (const conn of front) serve(conn).catch(() => {}).finally(() => conn.close());
  })();
  return { close: () => front.close() };
}
