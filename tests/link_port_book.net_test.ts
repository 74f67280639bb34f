/**
 * servers/link_port.ts `LinkPortBook`: which failures of a known link port make the dialler ask
 * the client port again. A handshake that got no answer (a restarted server's link port listens
 * before it is ready; a stopped one's backlog holds the HELLO) keeps the port for the patience;
 * an answer that is not the server's forgets it at once. Real sockets on loopback; the
 * handshake's outcome is what the caller reports (`failed`).
 */

import assert from "node:assert/strict";
import { LinkPortBook } from "../servers/link_port.ts";
import { dialHandshake } from "../servers/handshake.ts";
import { HerdAuth } from "../servers/auth.ts";
import { LineSplitter } from "../servers/lines.ts";
import { closeQuietly } from "../servers/io.ts";
import { leasePorts } from "./_helpers/ports.ts";
import { linkPortFront } from "./_helpers/net.ts";

/** A listener that accepts and holds connections, saying nothing. */
function silentListener(port: number): { close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const held: Deno.Conn[] = [];
  (async () => {
    for await (const conn of listener) held.push(conn);
  })().catch(() => {});
  return {
    close() {
      listener.close();
      for (const c of held) c.close();
    },
  };
}

/** Dials `book` for Jaquez and returns the port it connected to. */
async function dialedPort(book: LinkPortBook, client: number): Promise<number> {
  const conn = await book.dial({ name: "Jaquez", host: "127.0.0.1", port: client });
  try {
    return (conn.remoteAddr as Deno.NetAddr).port;
  } finally {
    conn.close();
  }
}

Deno.test("link port book: a known port that answers nothing is kept for the patience, then asked about; a wrong answer forgets it at once", async () => {
  const [known, client, fresh] = leasePorts(3);
  const silent = silentListener(known);
  const front = linkPortFront(client, "Jaquez", fresh);
  const freshListener = Deno.listen({ hostname: "127.0.0.1", port: fresh });
  try {
    // Silences within the patience (a minute here: however loaded the box) keep the port.
    const patient = new LinkPortBook([["Jaquez", known]], undefined, 60_000);
    for (let i = 0; i < 3; i++) {
      assert.equal(await dialedPort(patient, client), known);
      patient.failed("Jaquez", true);
      assert.equal(patient.get("Jaquez"), known, `forgotten at silence ${i + 1}`);
    }

    // Silent past the patience: asked about.
    const patience = 100;
    const book = new LinkPortBook([["Jaquez", known]], undefined, patience);
    assert.equal(await dialedPort(book, client), known);
    book.failed("Jaquez", true);
    await new Promise((r) => setTimeout(r, patience + 50));
    assert.equal(await dialedPort(book, client), known);
    book.failed("Jaquez", true);
    assert.equal(book.get("Jaquez"), undefined, "silent past the patience, and still kept");
    assert.equal(await dialedPort(book, client), fresh, "the next dial did not ask");

    // A dial that linked (no failure reported) ends the silence: the patience starts again.
    const linked = new LinkPortBook([["Jaquez", known]], undefined, patience);
    await dialedPort(linked, client);
    linked.failed("Jaquez", true);
    await new Promise((r) => setTimeout(r, patience + 50));
    await dialedPort(linked, client); // linked: no failure
    await dialedPort(linked, client);
    linked.failed("Jaquez", true);
    assert.equal(linked.get("Jaquez"), known, "an old silence counted against a new one");

    // An answer that is not Jaquez's (a refused HELLO, a bad proof): asked about at once.
    const wrong = new LinkPortBook([["Jaquez", known]], undefined, patience);
    assert.equal(await dialedPort(wrong, client), known);
    wrong.failed("Jaquez", false);
    assert.equal(wrong.get("Jaquez"), undefined);
    assert.equal(await dialedPort(wrong, client), fresh);
  } finally {
    silent.close();
    front.close();
    freshListener.close();
  }
});

Deno.test("link port book: a server that comes up between its known port's refusal and the client port's connect is linked on the known port, and asked nothing", async () => {
  // The server binds its link port, then its client port (cli/early_listen.ts). Bound right
  // after the dial starts, both come up after the known port's connect was refused (that
  // syscall is made as the dial starts) and before the client port's.
  let fronted = 0;
  let asked = 0;
  for (let i = 0; i < 20; i++) {
    const [known, client] = leasePorts(2);
    const book = new LinkPortBook([["Jaquez", known]]);
    const dial = book.dial({ name: "Jaquez", host: "127.0.0.1", port: client });
    const link = Deno.listen({ hostname: "127.0.0.1", port: known });
    const front = Deno.listen({ hostname: "127.0.0.1", port: client });
    const served = (async () => {
      for await (const conn of front) {
        fronted++;
        const buf = new Uint8Array(256);
        // Anything written (the question) is read; a dialler that leaves says nothing.
        if ((await conn.read(buf).catch(() => null)) !== null) {
          asked++;
          await conn.write(new TextEncoder().encode(`HERD2 LINKPORT Jaquez ${known}\n`))
            .catch(() => {});
        }
        conn.close();
      }
    })().catch(() => {});
    const accepted = link.accept();
    try {
      const conn = await dial;
      assert.equal((conn.remoteAddr as Deno.NetAddr).port, known);
      conn.close();
      (await accepted).close();
      // A connection to the front is accepted before the listener goes (bounded: most dials
      // never go there).
      const seen = fronted;
      for (let t = 0; t < 10 && fronted === seen; t++) {
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      link.close();
      front.close();
      await served;
    }
  }
  assert.ok(fronted > 0, "the race never happened: the known port always took the first dial");
  assert.equal(asked, 0, `asked the client port in ${asked} of ${fronted} races`);
});

Deno.test("link port book: what the handshake tells it: no answer (a close, a reset, a timeout) is inconclusive; another process's answer is not", async () => {
  const auth = new HerdAuth("book-test-secret-123");
  /** A dial's handshake against a listener that treats each connection with `serve`. */
  const handshakeWith = async (serve: (conn: Deno.Conn) => Promise<void>) => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const served = (async () => {
      const conn = await listener.accept();
      await serve(conn).catch(() => {});
      closeQuietly(conn);
    })();
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    try {
      return await dialHandshake(auth, conn, new LineSplitter(), "peer", "Hill", "Jaquez", 500);
    } finally {
      closeQuietly(conn); // the handshake's timeout may have closed it
      listener.close();
      await served;
    }
  };
  const readLine = async (conn: Deno.Conn) => {
    await conn.read(new Uint8Array(1024));
  };
  // A dying server's listener: the connection is closed unanswered.
  const closed = await handshakeWith(async () => {});
  assert.ok(!closed.ok && closed.inconclusive === true, JSON.stringify(closed));
  // A server still loading, or stopped: nothing within the timeout.
  const silent = await handshakeWith((conn) => readLine(conn).then(() => readLine(conn)));
  assert.ok(!silent.ok && silent.inconclusive === true, JSON.stringify(silent));
  // Another process: a client port's `?`, or a challenge that proves nothing.
  const refused = await handshakeWith(async (conn) => {
    await readLine(conn);
    await conn.write(new TextEncoder().encode("? HERD2 HELLO peer Hill Jaquez x\n"));
  });
  assert.ok(!refused.ok && refused.inconclusive !== true, JSON.stringify(refused));
  const forged = await handshakeWith(async (conn) => {
    await readLine(conn);
    const fake = `HERD2 CHALLENGE Jaquez Hill ${"0".repeat(32)} ${"0".repeat(64)}\n`;
    await conn.write(new TextEncoder().encode(fake));
    await readLine(conn);
  });
  assert.ok(!forged.ok && forged.inconclusive !== true, JSON.stringify(forged));
});
