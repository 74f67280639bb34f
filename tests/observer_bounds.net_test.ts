/**
 * Hostile observers (servers/observe.ts): a member holding the secret opens observer streams it
 * never reads. Each may hold 4 MiB of events waiting; the number a server keeps is bounded
 * (MAX_OBSERVERS), the oldest giving way with an `error` event that says why. Real sockets: an
 * in-process server on loopback TCP, observers dialled over the handshake.
 */

import assert from "node:assert/strict";
import { parseConfig } from "../servers/config.ts";
import { Herd } from "../servers/herd.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";
import { HerdAuth } from "../servers/auth.ts";
import { dialHandshake } from "../servers/handshake.ts";
import { LineSplitter } from "../servers/lines.ts";
import { dialLinkPort } from "../servers/link_port.ts";
import { closeQuietly } from "../servers/io.ts";
import { MAX_OBSERVERS } from "../servers/observe.ts";
import type { HerdEvent } from "../servers/events.ts";
import { freePorts } from "./_helpers/net.ts";

const SECRET = "observer-bounds-secret-0123456789";

/** True when the server closed `conn` (EOF or reset after what it sent), within `ms`. */
async function closedByServer(conn: Deno.Conn, ms: number): Promise<boolean> {
  const buf = new Uint8Array(64 * 1024);
  const until = Date.now() + ms;
  for (;;) {
    const left = until - Date.now();
    if (left <= 0) return false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const quiet = new Promise<"quiet">((r) => timer = setTimeout(() => r("quiet"), left));
    const n = await Promise.race([conn.read(buf).catch(() => null), quiet]);
    clearTimeout(timer);
    if (n === null) return true;
    if (n === "quiet") return false;
  }
}

Deno.test("observers: a server keeps at most MAX_OBSERVERS streams; the oldest gives way, and says so (adversarial review)", async () => {
  const [port] = freePorts(1);
  const config = parseConfig({ servers: { S: { port } }, secret: SECRET });
  const herd = new Herd(config, {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: SECRET,
    tcpLinks: true,
  });
  await herd.start();
  const server = herd.servers.get("S")!;
  const errors: string[] = [];
  const off = server.bus.subscribe((e: HerdEvent) => {
    if (e.kind === "error" && e.reason === "observer") errors.push(e.message);
  });
  const conns: Deno.Conn[] = [];
  const extra = 6;
  try {
    for (let i = 0; i < MAX_OBSERVERS + extra; i++) {
      const conn = await dialLinkPort({ name: "S", host: "127.0.0.1", port });
      conns.push(conn);
      const r = await dialHandshake(
        new HerdAuth(SECRET),
        conn,
        new LineSplitter(1024 * 1024),
        "observer",
        `o${i}`,
        "S",
      );
      assert.ok(r.ok, r.ok ? "" : r.reason);
    }
    // Before the bound all of them stayed, each free to hold 4 MiB of events it never reads.
    const closed = [];
    for (const c of conns) closed.push(await closedByServer(c, 300));
    assert.deepEqual(
      closed,
      conns.map((_, i) => i < extra),
      "the oldest closed, the newest kept",
    );
    assert.deepEqual(
      errors,
      Array.from(
        { length: extra },
        (_, i) => `observer o${i}: replaced: over ${MAX_OBSERVERS} observers`,
      ),
    );
  } finally {
    off();
    for (const c of conns) closeQuietly(c);
    await herd.stop();
  }
});
