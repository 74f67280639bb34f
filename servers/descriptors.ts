/**
 * The process's file-descriptor budget, shared by every server, link and dashboard connection in
 * this process. Running out of descriptors fails `accept` for every listener at once (and, before
 * this budget, stopped servers for good or ended the process), so sockets are counted and new
 * ones are refused well before the limit.
 *
 * Two thresholds under the soft `RLIMIT_NOFILE` (Deno has no API for it; Linux shows it in
 * /proc/self/limits):
 * - `clientCap`: client connections (herd and dashboard) are refused beyond it. The rest, the
 *   reserve, is headroom for peer links, handshakes, files (stores, logs) and the runtime.
 * - `hardCap`: nothing is admitted beyond it, not even a handshake; a few descriptors stay free
 *   so the process can still open a file or refuse politely.
 *
 * Descriptors not counted here (stores, logs, the runtime's own) are measured from
 * /proc/self/fd now and then, and added in.
 *
 * @module
 */

/** First accept retry after an accept error (ms); doubles per failure. */
const ACCEPT_BACKOFF_MIN_MS = 10;
/** Longest pause between accept retries (ms). */
const ACCEPT_BACKOFF_MAX_MS = 1000;

/** Soft limit used where /proc is unavailable (the usual Linux and macOS default). */
const FALLBACK_LIMIT = 1024;
/** How long a measurement of the uncounted descriptors is trusted (ms). */
const REMEASURE_MS = 1000;

/** A limit as `ulimit -n` or /proc print it. */
function limitValue(text: string | undefined): number | undefined {
  if (text === "unlimited") return Number.MAX_SAFE_INTEGER;
  return text !== undefined && /^\d+$/.test(text) ? Number(text) : undefined;
}

/**
 * Reads the soft open-files limit, or undefined when it cannot be read. Deno lets only
 * `--allow-all` read /proc/self, so the deno.json tasks, which grant less, pass the shell's
 * `ulimit -n` in `HERD_OPEN_FILES` instead.
 */
export function readOpenFilesLimit(): number | undefined {
  try {
    const text = Deno.readTextFileSync("/proc/self/limits");
    return limitValue(/^Max open files\s+(\d+|unlimited)\s/m.exec(text)?.[1]);
  } catch {
    try {
      return limitValue(Deno.env.get("HERD_OPEN_FILES")?.trim());
    } catch {
      return undefined; // no permission for the variable either
    }
  }
}

/** Open descriptors of this process, or undefined when /proc is unavailable. */
function countOpen(): number | undefined {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
    return n;
  } catch {
    return undefined;
  }
}

/** Counted sockets and the thresholds they are checked against. */
export class DescriptorBudget {
  readonly limit: number;
  readonly clientCap: number;
  readonly hardCap: number;
  #counted = 0;
  #uncounted = 0;
  #measuredAt = -Infinity;

  constructor(limit = readOpenFilesLimit() ?? FALLBACK_LIMIT) {
    this.limit = limit;
    // A quarter (at least 48) for links, handshakes, files and the runtime; 16 never used.
    const reserve = Math.max(48, Math.floor(limit / 4));
    this.hardCap = Math.max(1, limit - 16);
    this.clientCap = Math.max(1, limit - reserve);
  }

  /** Sockets counted now. */
  get counted(): number {
    return this.#counted;
  }

  /** Descriptors in use by the estimate: counted sockets plus the last measure of the rest. */
  get used(): number {
    return this.#counted + this.#uncounted;
  }

  /**
   * Counts one new socket if the process is under `cap` ("client" or "hard"); false means
   * refuse it (the caller closes it at once).
   */
  tryAcquire(cap: "client" | "hard", n = 1): boolean {
    const max = cap === "client" ? this.clientCap : this.hardCap;
    if (this.used + n > max / 2) this.#remeasure();
    if (this.used + n > max) return false;
    this.#counted += n;
    return true;
  }

  /** Counted sockets closed. */
  release(n = 1): void {
    this.#counted = Math.max(0, this.#counted - n);
  }

  /** Re-reads the uncounted descriptors (rate-limited: a readdir of thousands costs ~ms). */
  #remeasure(): void {
    const now = performance.now();
    if (now - this.#measuredAt < REMEASURE_MS) return;
    this.#measuredAt = now;
    const open = countOpen();
    if (open !== undefined) this.#uncounted = Math.max(0, open - this.#counted);
  }
}

/** The one budget of this process. */
export const descriptors: DescriptorBudget = new DescriptorBudget();

/**
 * The accept errors that belong to one pending connection, not to the listener: the client reset
 * or aborted it before we took it (ENOTCONN, ECONNRESET, ECONNABORTED), or the network errors
 * accept(2) says to treat like EAGAIN (EPROTO, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH,
 * EOPNOTSUPP, ENETUNREACH, and EPERM from a firewall). The next connection is taken at once.
 */
function connectionError(err: unknown): boolean {
  if (
    err instanceof Deno.errors.NotConnected || err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.ConnectionAborted
  ) return true;
  const code = /\(os error (\d+)\)/.exec(String((err as Error)?.message))?.[1];
  return code !== undefined && PER_CONNECTION_ERRNOS.has(Number(code));
}
/** Linux errno values of {@linkcode connectionError}. */
const PER_CONNECTION_ERRNOS = new Set([107, 104, 103, 71, 92, 112, 64, 113, 95, 101, 1]);

/**
 * Accepts connections until the listener closes. An error of one pending connection (a client
 * that reset before we took it: {@linkcode connectionError}) is skipped at once: backing off on
 * those let twenty resets hold every client, peer dial and dashboard visit off for 13 s. Any
 * other error (EMFILE above all: the listener is fine, and connections closing will make room)
 * is reported to `onError` and retried after a pause, 10 ms doubling to 1 s, instead of ending
 * the loop.
 *
 * @example
 * ```ts
 * declare const listener: Deno.TcpListener;
 * declare function serve(conn: Deno.Conn): void;
 *
 * for await (const conn of acceptConnections(listener, (m) => console.error(m))) serve(conn);
 * ```
 */
export async function* acceptConnections(
  listener: Deno.Listener,
  onError: (message: string) => void,
): AsyncGenerator<Deno.Conn> {
  let backoff = 0;
  for (;;) {
    let conn: Deno.Conn;
    try {
      conn = await listener.accept();
      backoff = 0;
    } catch (err) {
      if (err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted) return;
      if (connectionError(err)) continue;
      backoff = Math.min(
        backoff === 0 ? ACCEPT_BACKOFF_MIN_MS : backoff * 2,
        ACCEPT_BACKOFF_MAX_MS,
      );
      onError(`accept failed (${(err as Error).message}); retrying in ${backoff} ms`);
      await new Promise((resolve) => setTimeout(resolve, backoff));
      continue;
    }
    yield conn;
  }
}
