/**
 * The runtime floor for the benchmark: a bare Deno TCP line-echo server. Whatever our herd costs
 * above this is our code, not Deno's sockets.
 *
 * Usage: `deno run -A bench/echo_server.ts --port 0 [--reply line|at]`
 *
 * - `--reply line` (default): each complete input line is written back unchanged. Since the
 *   replies are the input bytes, a chunk's complete lines go back as one write of that slice: no
 *   decoding, no allocation per line. This is the true floor.
 * - `--reply at`: each line `IAMAT c loc t` is answered `AT Echo +0.000000000 c loc t`, so the
 *   iamat load mode can run against it; it adds decoding and string building, still no protocol
 *   checks.
 *
 * Prints `READY <port>` on stdout once listening (the real port, useful with `--port 0`).
 *
 * @module
 */

import { parseArgs } from "node:util";

const NL = 0x0a;
const encoder = new TextEncoder();
const decoder = new TextDecoder("latin1");

/** Writes all of `bytes`: `Conn.write` may take fewer bytes than offered. */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

/** The `--reply at` answer for one line (without its LF); `undefined` for a blank line. */
export function atReply(line: string): string | undefined {
  const f = line.trim().split(/\s+/);
  if (f[0] === "") return undefined;
  return `AT Echo +0.000000000 ${f.slice(1, 4).join(" ")}\n`;
}

async function serve(conn: Deno.Conn, mode: "line" | "at"): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  let pending = new Uint8Array(0); // bytes of an unterminated line
  try {
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      let data = buf.subarray(0, n);
      if (pending.length > 0) {
        const joined = new Uint8Array(pending.length + n);
        joined.set(pending);
        joined.set(data, pending.length);
        data = joined;
      }
      const last = data.lastIndexOf(NL);
      if (last < 0) {
        pending = data.slice();
        continue;
      }
      const complete = data.subarray(0, last + 1);
      // Copy the tail before the next read() overwrites `buf`.
      pending = data.slice(last + 1);
      if (mode === "line") {
        await writeAll(conn, complete);
      } else {
        let out = "";
        for (const line of decoder.decode(complete).split("\n")) out += atReply(line) ?? "";
        if (out) await writeAll(conn, encoder.encode(out));
      }
    }
  } catch {
    // A reset by the client is the normal way a bench connection ends.
  } finally {
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { port: { type: "string", default: "0" }, reply: { type: "string", default: "line" } },
  });
  const mode = values.reply === "at" ? "at" : "line";
  const listener = Deno.listen({ hostname: "127.0.0.1", port: Number(values.port) });
  console.log(`READY ${(listener.addr as Deno.NetAddr).port}`);
  for await (const conn of listener) {
    conn.setNoDelay(true);
    serve(conn, mode);
  }
}
