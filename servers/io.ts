/**
 * The herd's socket and file primitives: write all of a buffer (a socket or file may take fewer
 * bytes than offered per call), asynchronously or synchronously, and close a resource that may
 * already be closed.
 *
 * @module
 */

/** Anything with Deno's `write` (sockets, TLS connections, files). */
export interface Writer {
  write(p: Uint8Array): Promise<number>;
}

/**
 * Writes all bytes (a socket may accept fewer than offered per call).
 *
 * @example
 * ```ts
 * import { writeAll } from "./io.ts";
 * const file = await Deno.open(await Deno.makeTempFile(), { write: true });
 * await writeAll(file, new TextEncoder().encode("AT ...\n"));
 * file.close();
 * ```
 */
export async function writeAll(w: Writer, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await w.write(bytes.subarray(off));
}

/**
 * Writes all bytes synchronously (a file in the page cache: one call, no event-loop turn).
 *
 * @example
 * ```ts
 * import { writeAllSync } from "./io.ts";
 * const file = Deno.openSync(Deno.makeTempFileSync(), { write: true });
 * writeAllSync(file, new TextEncoder().encode("a log line\n"));
 * file.close();
 * ```
 */
export function writeAllSync(w: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  for (let off = 0; off < bytes.length;) off += w.writeSync(bytes.subarray(off));
}

/**
 * Closes `c`, ignoring that it may already be closed (a peer's reset, a timeout, a shutdown).
 *
 * @example
 * ```ts
 * import { closeQuietly } from "./io.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * closeQuietly(listener);
 * closeQuietly(listener); // no error
 * ```
 */
export function closeQuietly(c: { close(): void } | undefined): void {
  try {
    c?.close();
  } catch {
    // already closed
  }
}

/**
 * Where a connection that was read before it was handed over keeps when those bytes arrived:
 * `server NAME` and `start` accept and read early connections while they load
 * (cli/early_listen.ts), and replay the bytes to the server later. An IAMAT's diff counts from
 * when its bytes arrived, not from the replay (docs/protocol.md).
 */
export const ARRIVED_NS: unique symbol = Symbol("arrivedNs");

/**
 * The server-clock time (ns) at which the bytes of `conn`'s last read arrived, when they were
 * read earlier and replayed ({@linkcode ARRIVED_NS}); undefined when the read just happened.
 *
 * @example
 * ```ts
 * import { arrivedNs } from "./io.ts";
 * arrivedNs({}); // undefined: an ordinary connection's bytes arrived with its read
 * ```
 */
export function arrivedNs(conn: object): bigint | undefined {
  const at = (conn as { [ARRIVED_NS]?: unknown })[ARRIVED_NS];
  return typeof at === "function" ? at() : undefined;
}
