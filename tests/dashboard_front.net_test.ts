/**
 * The dashboard's TCP front (servers/http_front.ts) must not let connections that never finish a
 * request hold the dashboard's whole connection share: 256 idle sockets (or sockets that trickle
 * header bytes, slowloris) from one client would otherwise answer every visitor, and the ops
 * routes `start` serves on the same port (/healthz, /metrics), `503` for as long as they are held.
 *
 * @module
 */

import assert from "node:assert/strict";
import { httpConnectionCap, TcpFront } from "../servers/http_front.ts";
import { rawRequest } from "./_helpers/http_raw.ts";

const STALL_MS = 1_000;

Deno.test("dashboard front: connections that never complete a request do not lock the dashboard out", async () => {
  const dir = await Deno.makeTempDir({ prefix: "herd-front-" });
  const target = `${dir}/http.sock`;
  const server = Deno.serve(
    { transport: "unix", path: target, onListen: () => {} },
    () => new Response("ok"),
  );
  const front = new TcpFront({
    hostname: "127.0.0.1",
    port: 0,
    target,
    stallMs: STALL_MS,
    onError: () => {},
  });
  const port = front.addr.port;
  const held: Deno.Conn[] = [];
  let trickle: ReturnType<typeof setInterval> | undefined;
  try {
    const cap = httpConnectionCap();
    const enc = new TextEncoder();
    for (let i = 0; i < cap; i++) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      held.push(c);
      // Half send nothing at all; half start a request and never finish its headers.
      if (i % 2) await c.write(enc.encode(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`));
    }
    // The slowloris half keeps sending a header byte now and then (well inside any idle timeout).
    trickle = setInterval(() => {
      for (let i = 1; i < held.length; i += 2) held[i].write(enc.encode("X")).catch(() => {});
    }, STALL_MS / 4);

    const statuses: number[] = [];
    const deadline = Date.now() + 10 * STALL_MS;
    let status = 0;
    while (Date.now() < deadline) {
      status = (await rawRequest(port, "/", { ms: 5_000 }).catch(() => ({ status: 0 }))).status;
      statuses.push(status);
      if (status === 200) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(
      status,
      200,
      `with ${cap} connections held that never complete a request, a fresh request still got ` +
        `${status} after ${10 * STALL_MS} ms (statuses seen: ${[...new Set(statuses)].join(", ")})`,
    );
  } finally {
    clearInterval(trickle);
    for (const c of held) {
      try {
        c.close();
      } catch { /* closed by the front */ }
    }
    await front.close();
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dashboard front: a live event stream quiet for 1.5 s (a stalled event loop) keeps its place at the cap", async () => {
  const dir = await Deno.makeTempDir({ prefix: "herd-front-" });
  const target = `${dir}/http.sock`;
  // Streams that send a frame every 250 ms, like the hub's heartbeat, except while `paused`:
  // what a stream looks like from the front when the herd's event loop stalls.
  let paused = false;
  const timers = new Set<ReturnType<typeof setInterval>>();
  const enc = new TextEncoder();
  const server = Deno.serve(
    { transport: "unix", path: target, onListen: () => {} },
    (req) => {
      if (new URL(req.url).pathname !== "/events") return new Response("ok");
      let timer: ReturnType<typeof setInterval>;
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(enc.encode(": hello\n\n"));
          timer = setInterval(() => {
            if (!paused) controller.enqueue(enc.encode(": beat\n\n"));
          }, 250);
          timers.add(timer);
        },
        cancel() {
          clearInterval(timer);
          timers.delete(timer);
        },
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    },
  );
  const front = new TcpFront({
    hostname: "127.0.0.1",
    port: 0,
    target,
    stallMs: 30_000,
    onError: () => {},
  });
  const port = front.addr.port;
  const streams: { conn: Deno.Conn; frames: number; closed: boolean; reading: Promise<void> }[] =
    [];
  try {
    const cap = httpConnectionCap();
    for (let i = 0; i < cap; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(enc.encode(`GET /events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`));
      const s = { conn, frames: 0, closed: false, reading: Promise.resolve() };
      s.reading = (async () => {
        const buf = new Uint8Array(4096);
        try {
          while ((await conn.read(buf)) !== null) s.frames++;
        } catch { /* reset */ }
        s.closed = true;
      })();
      streams.push(s);
    }
    const deadline = Date.now() + 10_000;
    while (streams.some((s) => s.frames < 2) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(streams.every((s) => s.frames >= 2), "every stream is live");
    paused = true;
    await new Promise((r) => setTimeout(r, 1_500));
    // A new connection at the cap: no stream has been quiet long enough to give way to it.
    const fresh = await rawRequest(port, "/", { ms: 5_000 });
    paused = false;
    assert.equal(fresh.status, 503, "a new connection took a live stream's place");
    const before = streams.map((s) => s.frames);
    await new Promise((r) => setTimeout(r, 1_000));
    const cut = streams.filter((s, i) => s.closed || s.frames === before[i]).length;
    assert.equal(cut, 0, `${cut} of ${cap} live streams were cut after a 1.5 s pause`);
  } finally {
    for (const s of streams) {
      try {
        s.conn.close();
      } catch { /* closed by the front */ }
    }
    await Promise.all(streams.map((s) => s.reading));
    for (const t of timers) clearInterval(t);
    await front.close();
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
