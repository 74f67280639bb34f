/**
 * What a `server NAME` process remembers of plain link ports across its restarts (herds without
 * TLS and without a configured `"linkPort"`): its own, tried first when it listens again, and its
 * neighbours', dialled first after its own restart. Either way no neighbour asks a client port
 * for a link port after a restart (servers/link_port.ts): a question's connection on a client
 * port is what `lsof -ti:PORT | xargs kill` (the CS 131 TA script) would kill the asker with.
 *
 * One small JSON file, `<dir>/<name>.link-ports` (the data dir, else the log dir: the two the
 * `server` task may write), owner-only, replaced whole (a temporary file renamed over it: a
 * symlink at the path is replaced, never followed). Nothing in it is trusted beyond a first try:
 * our own port is only listened on (taken: the system picks another), a neighbour's only dialled
 * (the handshake proves who answers; a failure forgets it). A file that does not parse, or was
 * written for another config, is ignored. Imports only own_file.ts and limits.ts (which import
 * nothing): cli/early_listen.ts reads it before the rest of the program loads.
 *
 * @module
 */

import { granted, ownFile } from "./own_file.ts";
import { SERVER_NAME } from "./limits.ts";

/** Largest file read (a few dozen names and ports fit many times over). */
const MAX_FILE_BYTES = 64 * 1024;
/** Most neighbours remembered. */
const MAX_PEERS = 256;
/** A server name as the config allows it; anything else is not read or written. */
const NAME = SERVER_NAME;

function isPort(p: unknown): p is number {
  return Number.isInteger(p) && (p as number) >= 1 && (p as number) <= 65535;
}

/**
 * A server's remembered link ports. {@linkcode LinkPortMemory.open} reads the file;
 * `rememberSelf` and `rememberPeer` write it in the background (coalesced, best effort: a write
 * that fails leaves only a question more after the next restart).
 *
 * @example
 * ```ts
 * const memory = LinkPortMemory.open("./data", "Hill", "/etc/herd.json");
 * memory.self; // the link port Hill had last time, if any
 * memory.rememberSelf(40123);
 * memory.rememberPeer("Jaquez", 40200);
 * await memory.flush();
 * ```
 */
export class LinkPortMemory {
  /** The file, or undefined when nothing may be written (no permission, a bad name). */
  readonly path: string | undefined;
  /**
   * Our own link port to listen on first: the one of our last run (undefined: none remembered);
   * cli/early_listen.ts sets the one it listened on, for the server to take.
   */
  self: number | undefined;
  /** Neighbours' link ports, by name. */
  readonly peers: Map<string, number>;
  #config: string;
  /** Our own port as the file has it. */
  #savedSelf: number | undefined;
  #writing: Promise<void> | undefined;
  #dirty = false;

  private constructor(
    path: string | undefined,
    config: string,
    self: number | undefined,
    peers: Map<string, number>,
  ) {
    this.path = path;
    this.#config = config;
    this.self = this.#savedSelf = self;
    this.peers = peers;
  }

  /**
   * Reads server `name`'s memory in `dir` for the config at `config` (its path; undefined: the
   * built-in one). Never throws: an unreadable or foreign file is an empty memory. Synchronous:
   * a few hundred bytes, read before the client port listens (no trip through the I/O threads).
   * Our own port is forgotten when it is one of `taken` (ports claimed elsewhere in this run: the
   * config's client and link ports, `--ops-port`; a claim wins over a memory).
   */
  static open(
    dir: string,
    name: string,
    config?: string,
    taken: readonly number[] = [],
  ): LinkPortMemory {
    const id = configId(config);
    if (!NAME.test(name) || dir === "") {
      return new LinkPortMemory(undefined, id, undefined, new Map());
    }
    const path = `${dir}/${name}.link-ports`;
    let self: number | undefined;
    const peers = new Map<string, number>();
    try {
      if (granted({ name: "read", path })) {
        // Only a file of ours that nobody else may write (we write it 0600): in a shared dir,
        // a file planted or rewritten by another user is not ours to trust.
        if (ownFile(Deno.lstatSync(path), dir, MAX_FILE_BYTES)) {
          const json = JSON.parse(Deno.readTextFileSync(path));
          if (json?.config === id) {
            if (isPort(json.self) && !taken.includes(json.self)) self = json.self;
            const known = typeof json.peers === "object" && json.peers !== null ? json.peers : {};
            for (const [peer, port] of Object.entries(known).slice(0, MAX_PEERS)) {
              if (NAME.test(peer) && isPort(port)) peers.set(peer, port);
            }
          }
        }
      }
    } catch {
      // No file yet, or not ours to read: nothing remembered.
    }
    const writable = granted({ name: "write", path: dir });
    return new LinkPortMemory(writable ? path : undefined, id, self, peers);
  }

  /** Remembers our own link port. */
  rememberSelf(port: number): void {
    this.self = port;
    if (this.#savedSelf === port) return;
    this.#savedSelf = port;
    this.#save();
  }

  /** Remembers a neighbour's link port (undefined: forgets it). */
  rememberPeer(peer: string, port: number | undefined): void {
    if (this.peers.get(peer) === port) return;
    if (port === undefined) this.peers.delete(peer);
    else if (NAME.test(peer) && (this.peers.has(peer) || this.peers.size < MAX_PEERS)) {
      this.peers.set(peer, port);
    } else return;
    this.#save();
  }

  /** Resolves once what was remembered so far is written (or failed to be). */
  async flush(): Promise<void> {
    while (this.#writing !== undefined) await this.#writing;
  }

  #save(): void {
    if (this.path === undefined) return;
    this.#dirty = true;
    if (this.#writing !== undefined) return;
    this.#writing = (async () => {
      while (this.#dirty) {
        this.#dirty = false;
        await this.#write(this.path!).catch(() => {});
      }
      this.#writing = undefined;
    })();
  }

  async #write(path: string): Promise<void> {
    const text = JSON.stringify({
      config: this.#config,
      ...(this.#savedSelf === undefined ? {} : { self: this.#savedSelf }),
      peers: Object.fromEntries(this.peers),
    });
    // A fresh name, created (never opened through a symlink), then renamed over the file.
    const tmp = `${path}.${crypto.randomUUID()}.tmp`;
    try {
      await Deno.writeTextFile(tmp, text + "\n", { createNew: true, mode: 0o600 });
      await Deno.rename(tmp, path);
    } catch (err) {
      await Deno.remove(tmp).catch(() => {});
      throw err;
    }
  }
}

/** Which config a memory belongs to: its path made absolute, or the built-in config. */
function configId(config: string | undefined): string {
  if (config === undefined) return "(built-in)";
  if (config.startsWith("/")) return config;
  try {
    return `${Deno.cwd()}/${config}`;
  } catch {
    return config;
  }
}
