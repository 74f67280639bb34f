/**
 * Every handshake reader gives up on the first line over the handshake line limit, never reading a
 * stream without bound while it waits for CHALLENGE, WELCOME/WATCHING or PROOF. Something that is
 * not a herd server holding a neighbour's port and answering a HELLO with an endless run of bytes
 * and no LF had a dialler read until its 3 s handshake timeout: hundreds of MB per redial, about
 * half a CPU core for as long as the port was held (third adversarial review, tmp_adv3/floodpeer.py).
 *
 * - a server dialling its neighbour (a link), answered by an endless line: gives up at once;
 * - an observer dial (the remote dashboard's, bench/observer.ts) answered the same way: the same;
 * - an acceptor sent an endless line instead of the PROOF: closes at once, and logs why;
 * - a connection admitted over the client cap for a handshake whose HELLO trickles in: closed at
 *   the 3 s handshake deadline (before: read until the idle timeout).
 */

import assert from "node:assert/strict";
import { HerdAuth } from "../servers/auth.ts";
import { parseConfig } from "../servers/config.ts";
import type { HerdEvent } from "../servers/events.ts";
import { dialHandshake, newNonce } from "../servers/handshake.ts";
import { Herd } from "../servers/herd.ts";
import { LineSplitter } from "../servers/lines.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";
import { freePorts, waitFor } from "./_helpers/net.ts";

const SECRET = "handshake-flood-test-secret-0123";
/** Well under the 3 s handshake timeout, with room for a loaded machine. */
const GIVE_UP_MS = 1500;

/**
 * Writes `conn` a line without LF until it is closed (or 5 s pass); returns how long that took
 * and how much was sent.
 */
async function flood(conn: Deno.Conn): Promise<{ ms: number; mib: string }> {
  const chunk = new Uint8Array(64 * 1024).fill(0x41);
  const started = performance.now();
  let sent = 0;
  try {
    while (performance.now() - started < 5000) sent += await conn.write(chunk);
  } catch {
    // closed by the other side: what we want, soon
  }
  return { ms: Math.round(performance.now() - started), mib: (sent / 2 ** 20).toFixed(0) };
}

function closeQuietly(c: { close(): void } | undefined): void {
  try {
    c?.close();
  } catch {
    // closed already
  }
}

/**
 * M alone, its neighbours F (sorts first: M answers its HELLO) and Z (M dials it) played by the
 * test; `listenZ` listens on Z's port first.
 */
function herdM(
  listenZ: boolean,
  maxConnections = SERVER_DEFAULTS.maxConnections,
): { herd: Herd; m: number; z?: Deno.Listener } {
  const [m, f, z] = freePorts(3);
  const listener = listenZ ? Deno.listen({ hostname: "127.0.0.1", port: z }) : undefined;
  const config = parseConfig({
    servers: { F: { port: f }, M: { port: m, neighbors: ["F", "Z"] }, Z: { port: z } },
  });
  const herd = new Herd(config, {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: SECRET,
    only: ["M"],
    maxConnections,
  });
  return { herd, m, z: listener };
}

Deno.test("handshake: a dialler answered by an endless line without LF gives up at the line limit, not at the handshake timeout", async () => {
  const { herd, z } = herdM(true);
  const listener = z!;
  let conn: Deno.Conn | undefined;
  try {
    await herd.start();
    conn = await listener.accept();
    // Read M's HELLO, then stream bytes that never end a line.
    assert.ok((await conn.read(new Uint8Array(4096))) !== null, "M sends its HELLO");
    const { ms, mib } = await flood(conn);
    assert.ok(
      ms < GIVE_UP_MS,
      `M closed the connection after ${ms} ms and ${mib} MiB of a line without LF ` +
        `(the handshake timeout is 3 s)`,
    );
  } finally {
    closeQuietly(conn);
    listener.close();
    await herd.stop();
  }
});

Deno.test("handshake: an observer dial answered by an endless line without LF gives up at the line limit", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const dialer = await Deno.connect({ hostname: "127.0.0.1", port });
  const conn = await listener.accept();
  try {
    const started = performance.now();
    const dialled = dialHandshake(
      new HerdAuth(SECRET),
      dialer,
      new LineSplitter(1 << 20),
      "observer",
      "watcher",
      "M",
    );
    assert.ok((await conn.read(new Uint8Array(4096))) !== null, "the observer sends its HELLO");
    const flooding = flood(conn);
    const r = await dialled;
    const ms = performance.now() - started;
    closeQuietly(dialer);
    await flooding;
    assert.equal(r.ok, false);
    assert.ok(ms < GIVE_UP_MS, `the observer gave up after ${Math.round(ms)} ms`);
    assert.match(r.ok ? "" : r.reason, /line over the handshake line limit/);
  } finally {
    closeQuietly(dialer);
    closeQuietly(conn);
    listener.close();
  }
});

Deno.test("handshake: an acceptor sent an endless line instead of the PROOF closes at the line limit and logs why", async () => {
  const { herd, m } = herdM(false);
  const events: HerdEvent[] = [];
  herd.bus.subscribe((e) => {
    if (e.kind === "peer.rejected") events.push(e);
  });
  let conn: Deno.Conn | undefined;
  try {
    await herd.start();
    // F's HELLO (F sorts first, so M answers it), then a "proof" that never ends.
    conn = await Deno.connect({ hostname: "127.0.0.1", port: m });
    await conn.write(new TextEncoder().encode(`HERD2 HELLO peer F M ${newNonce()}\n`));
    const got = new Uint8Array(4096);
    const n = await conn.read(got);
    assert.match(new TextDecoder().decode(got.subarray(0, n ?? 0)), /^HERD2 CHALLENGE M F /);
    const { ms, mib } = await flood(conn);
    assert.ok(
      ms < GIVE_UP_MS,
      `M closed the connection after ${ms} ms and ${mib} MiB of a line without LF`,
    );
    await waitFor(() => events.length > 0, 2000, "a peer.rejected event");
    assert.match(JSON.stringify(events), /line over the handshake line limit/);
  } finally {
    closeQuietly(conn);
    await herd.stop();
  }
});

Deno.test("handshake: a connection admitted over the client cap for a handshake is closed when its HELLO trickles past 3 s", async () => {
  const { herd, m } = herdM(false, 1);
  let holder: Deno.Conn | undefined;
  let conn: Deno.Conn | undefined;
  try {
    await herd.start();
    holder = await Deno.connect({ hostname: "127.0.0.1", port: m });
    await holder.write(new TextEncoder().encode("IAMAT holder +1+1 1700000000\n"));
    assert.ok((await holder.read(new Uint8Array(512))) !== null, "the holder is served");
    // Over the cap: "HERD" admits it; then one byte of the HELLO every 250 ms (never silent
    // for the 500 ms that answers a partial line, never a whole line).
    conn = await Deno.connect({ hostname: "127.0.0.1", port: m });
    const started = performance.now();
    await conn.write(new TextEncoder().encode(`HERD2 HELLO peer F M `));
    const closed = (async () => {
      try {
        while ((await conn!.read(new Uint8Array(512))) !== null) {
          // nothing is expected; EOF is
        }
      } catch {
        // reset: closed too
      }
      return performance.now() - started;
    })();
    let open = true;
    closed.then(() => (open = false));
    while (open && performance.now() - started < 8000) {
      await conn.write(new TextEncoder().encode("a")).catch(() => (open = false));
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(open, false, "a HELLO trickled for 8 s is still being read");
    const ms = await closed;
    assert.ok(ms > 2500 && ms < 5000, `closed after ${Math.round(ms)} ms (the deadline is 3 s)`);
  } finally {
    closeQuietly(holder);
    closeQuietly(conn);
    await herd.stop();
  }
});
