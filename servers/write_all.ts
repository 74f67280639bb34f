/**
 * One primitive for every writer in the herd: write all of a buffer, since a socket or file may
 * take fewer bytes than offered per call.
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
 * import { writeAll } from "./write_all.ts";
 * const file = await Deno.open(await Deno.makeTempFile(), { write: true });
 * await writeAll(file, new TextEncoder().encode("AT ...\n"));
 * file.close();
 * ```
 */
export async function writeAll(w: Writer, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await w.write(bytes.subarray(off));
}
