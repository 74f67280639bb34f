/**
 * Peers must prove they belong. Against one in-process server "M" with fake
 * neighbours played by the test: "F" (dials M) and "Z" (M dials Z); "N" is in the herd but not
 * M's neighbour.
 *
 * - a HELLO from a non-neighbour, from an unknown server, for another server, or malformed is
 *   refused, logged as `PEER REJECTED` with that reason, and answered like any invalid client
 *   line (`? HERD2 ...`); a wrong, garbage, reflected or missing PROOF is refused, logged, and the
 *   connection closed with no WELCOME and no record;
 * - a client cannot speak the server protocol: `AT ...`, `R ...`, `SYNC ...`, a HELLO after the
 *   first line all get `? ...`;
 * - an authenticated peer that sends garbage is dropped and logged; its good records before the
 *   garbage were taken;
 * - a half-open peer (authenticated, then silent) is detected by heartbeats on both the accepting
 *   and the dialling side: the link goes down within 3-4 s;
 * - a dialler refuses an acceptor whose proof is wrong or replayed, and says so;
 * - two real servers with different secrets never link, and both log why.
 *
 * Replays recorded by a proxy on the path, and clock skew, are in tests/link_replay.proc_test.ts.
 */

import assert from "node:assert/strict";
import { HerdAuth } from "../servers/auth.ts";
import { parseConfig } from "../servers/config.ts";
import type { HerdEvent } from "../servers/events.ts";
import { newNonce } from "../servers/handshake.ts";
import { proofText } from "../servers/wire.ts";
import { Herd } from "../servers/herd.ts";
import { openLogs } from "../servers/log.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";
import { exchange, freePorts, linkPortFront, TcpClient, waitFor } from "./_helpers/net.ts";

const SECRET = "peer-auth-test-secret-0123456789";

interface Setup {
  herd: Herd;
  port: number;
  zPort: number;
  events: HerdEvent[];
  auth: HerdAuth;
  log(): Promise<string>;
  close(): Promise<void>;
}

/** Starts M (neighbours F and Z, both fake; N is in the herd) with its log file in a temp dir. */
async function startM(secret = SECRET): Promise<Setup> {
  const [m, f, z, n] = freePorts(4);
  const config = parseConfig({
    servers: {
      F: { port: f, neighbors: ["M"] },
      M: { port: m, neighbors: ["Z"] },
      N: { port: n },
      Z: { port: z },
    },
  });
  const herd = new Herd(config, {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret,
    only: ["M"],
    whatsatGraceMs: 0,
  });
  const dir = await Deno.makeTempDir({ prefix: "peer-auth-" });
  const logs = await openLogs(herd.bus, dir, ["M"]);
  const events: HerdEvent[] = [];
  const off = herd.bus.subscribe((e) => {
    if (e.kind === "link.up" || e.kind === "link.down" || e.kind === "peer.rejected") {
      events.push(e);
    }
  });
  await herd.start();
  return {
    herd,
    port: m,
    zPort: z,
    events,
    auth: new HerdAuth(secret),
    async log() {
      await logs.flush();
      return await Deno.readTextFile(`${dir}/M.log`);
    },
    async close() {
      off();
      await herd.stop();
      await logs.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function linkUp(s: Setup, peer: string): boolean {
  return s.herd.servers.get("M")!.links.find((l) => l.peer === peer)!.up;
}

/** Reads a connection line by line (text without LF); throws at EOF. */
function lineReader(conn: Deno.Conn): () => Promise<string> {
  const buf = new Uint8Array(4096);
  let text = "";
  return async () => {
    while (!text.includes("\n")) {
      const n = await conn.read(buf);
      if (n === null) throw new Error(`EOF; got ${JSON.stringify(text)}`);
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    const line = text.slice(0, text.indexOf("\n"));
    text = text.slice(line.length + 1);
    return line;
  };
}

/**
 * M alone (neighbours F and Z), and where the test plays Z: Z's client port answers M's
 * link-port question (servers/link_port.ts), so M's link dials come to `listener`.
 */
function withFakeZ(): {
  m: number;
  listener: Pick<Deno.Listener, "accept" | "close">;
  herd: Herd;
} {
  const [m, f, z] = freePorts(3);
  const links = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const front = linkPortFront(z, "Z", (links.addr as Deno.NetAddr).port);
  const listener = {
    accept: () => links.accept(),
    close: () => {
      front.close();
      links.close();
    },
  };
  const config = parseConfig({
    servers: { F: { port: f, neighbors: ["M"] }, M: { port: m, neighbors: ["Z"] }, Z: { port: z } },
  });
  const herd = new Herd(config, {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: SECRET,
    only: ["M"],
  });
  return { m, listener, herd };
}

/** A HELLO line from `from` to `to`. */
function hello(from: string, to: string, nonce = newNonce()): string {
  return `HERD2 HELLO peer ${from} ${to} ${nonce}`;
}

/** Sends F's HELLO to M and reads M's CHALLENGE; checks M's proof. */
async function challenged(
  s: Setup,
): Promise<{ c: TcpClient; nonceD: string; nonceA: string; macA: string }> {
  const c = await TcpClient.connect(s.port);
  const nonceD = newNonce();
  await c.send(`${hello("F", "M", nonceD)}\n`);
  const text = await c.waitUntil((t) => t.includes("\n"), 3000);
  const f = text.slice(0, text.indexOf("\n")).split(" ");
  assert.deepEqual(f.slice(0, 4), ["HERD2", "CHALLENGE", "M", "F"]);
  const [nonceA, macA] = [f[4], f[5]];
  assert.ok(
    await s.auth.verify(proofText("peer", "acceptor", "F", "M", nonceD, nonceA), macA),
    "M proves the secret over our nonce",
  );
  return { c, nonceD, nonceA, macA };
}

/** Connects as F with a good handshake; returns the connection once M's WELCOME and SYNC came. */
async function connectAsF(s: Setup): Promise<TcpClient> {
  const { c, nonceD, nonceA } = await challenged(s);
  const mac = await s.auth.sign(proofText("peer", "dialler", "F", "M", nonceD, nonceA));
  await c.send(`HERD2 PROOF ${mac}\n`);
  const text = await c.waitUntil((t) => /\nHERD2 WELCOME M F\nSYNC [^\n]*\n/.test(t), 3000);
  assert.match(text, /^HERD2 CHALLENGE [^\n]*\nHERD2 WELCOME M F\nSYNC /);
  await waitFor(() => linkUp(s, "F"), 2000, "link M-F up");
  return c;
}

Deno.test("peer auth: bad HELLOs are refused, logged with their reason, and answered as invalid lines", async () => {
  const s = await startM();
  try {
    const cases: [string, string, RegExp][] = [
      ["not a neighbour", hello("N", "M"), /N is not a neighbour/],
      ["unknown server", hello("Q", "M"), /unknown server Q/],
      ["for another server", hello("F", "Z"), /handshake for Z, not M/],
      ["malformed", "HERD2 HELLO peer F M", /malformed handshake/],
      ["short nonce", `HERD2 HELLO peer F M abc`, /malformed handshake/],
      ["unknown role", `HERD2 HELLO king F M ${newNonce()}`, /malformed handshake/],
    ];
    for (const [what, line, reason] of cases) {
      const c = await TcpClient.connect(s.port);
      await c.send(`${line}\n`);
      const [reply] = await c.replies(1);
      assert.equal(reply, `? ${line}\n`, what);
      // Still a plain client connection.
      await c.send("IAMAT auth.kiwi +1+2 1700000000\n");
      const [, at] = await c.replies(2);
      assert.match(at, /^AT M [+-]\d+\.\d{9} auth\.kiwi \+1\+2 1700000000\n$/, what);
      await c.close();
      const log = await s.log();
      assert.match(log, new RegExp(`PEER REJECTED 127\\.0\\.0\\.1:\\d+ \\(${reason.source}`), what);
      assert.doesNotMatch(log, /herd secret mismatch/, what);
      assert.equal(linkUp(s, "F"), false, what);
    }
  } finally {
    await s.close();
  }
});

Deno.test("peer auth: a wrong, garbage, reflected, malformed or missing PROOF closes the connection, no record leaks", async () => {
  const s = await startM();
  try {
    await exchange(s.port, "IAMAT leak.kiwi +1+2 1700000000\n");
    const wrong = new HerdAuth("not-the-herd-secret");
    type Proof = (h: { nonceD: string; nonceA: string; macA: string }) => Promise<string | null>;
    const cases: [string, Proof, RegExp][] = [
      [
        "wrong secret",
        async (h) =>
          `HERD2 PROOF ${await wrong.sign(
            proofText("peer", "dialler", "F", "M", h.nonceD, h.nonceA),
          )}`,
        /bad proof from F\)/,
      ],
      ["garbage mac", () => Promise.resolve("HERD2 PROOF zz"), /bad proof from F\)/],
      // M's own proof sent back: the direction is part of what the MAC covers.
      ["reflected", (h) => Promise.resolve(`HERD2 PROOF ${h.macA}`), /bad proof from F\)/],
      [
        "proof over another nonce",
        async (h) =>
          `HERD2 PROOF ${await s.auth.sign(
            proofText("peer", "dialler", "F", "M", h.nonceD, newNonce()),
          )}`,
        /bad proof from F\)/,
      ],
      [
        "proof for the observer role",
        async (h) =>
          `HERD2 PROOF ${await s.auth.sign(
            proofText("observer", "dialler", "F", "M", h.nonceD, h.nonceA),
          )}`,
        /bad proof from F\)/,
      ],
      ["malformed", () => Promise.resolve("HERD2 PROOF"), /malformed proof from F\)/],
      ["silence", () => Promise.resolve(null), /handshake timeout \(no proof from F\)\)/],
    ];
    for (const [what, proof, reason] of cases) {
      const h = await challenged(s);
      const line = await proof(h);
      const t0 = performance.now();
      if (line !== null) await h.c.send(`${line}\n`);
      const text = await h.c.waitEof(6000);
      const ms = performance.now() - t0;
      assert.equal(text.split("\n").length, 2, `${what}: only the CHALLENGE came: ${text}`);
      assert.doesNotMatch(text, /WELCOME|SYNC|leak\.kiwi/, what);
      if (line === null) assert.ok(ms > 2000 && ms < 5000, `timeout after ${ms.toFixed(0)} ms`);
      await h.c.close();
      assert.match(
        await s.log(),
        new RegExp(`PEER REJECTED 127\\.0\\.0\\.1:\\d+ \\(${reason.source}`),
        what,
      );
      assert.equal(linkUp(s, "F"), false, what);
    }
    assert.equal(s.events.filter((e) => e.kind === "link.up").length, 0);
  } finally {
    await s.close();
  }
});

Deno.test("peer auth: a client cannot speak the server-to-server protocol", async () => {
  const s = await startM();
  try {
    const validHello = hello("F", "M");
    const lines = [
      "AT Clark +0.263873386 kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503",
      "R 1 Clark +0.263873386 kiwi +34.06-118.44 1520023934.9",
      "S 5",
      "SYNC abcd1234 10 - 0",
      "PING",
      "CAUGHTUP 3",
      "HERD2 WELCOME M F",
      `HERD2 PROOF ${"0".repeat(64)}`,
      `HERD2 CHALLENGE M F ${newNonce()} ${"0".repeat(64)}`,
      validHello, // a handshake only counts as the first line
    ];
    const reply = await exchange(
      s.port,
      "IAMAT first +1+1 1700000000\n" + lines.map((l) => `${l}\n`).join(""),
    );
    const replies = reply.split("\n").slice(1, -1);
    assert.deepEqual(replies, lines.map((l) => `? ${l}`));
    assert.equal(linkUp(s, "F"), false);
    // The planted AT record is not stored.
    assert.equal(
      await exchange(s.port, "WHATSAT kiwi.cs.ucla.edu 10 0\n"),
      "? WHATSAT kiwi.cs.ucla.edu 10 0\n",
    );
  } finally {
    await s.close();
  }
});

Deno.test("peer auth: an authenticated peer that sends garbage is dropped and logged", async () => {
  const s = await startM();
  try {
    const garbage: [string, string | Uint8Array, RegExp][] = [
      ["unknown line", "BLAH BLAH\n", /unexpected "BLAH BLAH"/],
      ["client line", "IAMAT g.client +1+1 1700000000\n", /unexpected "IAMAT/],
      ["random bytes", new Uint8Array([0xff, 0x00, 0x13, 0x80, 0x0a]), /unexpected/],
    ];
    for (const [k, [what, bytes, reason]] of garbage.entries()) {
      const c = await connectAsF(s);
      // A good record first: it is taken.
      await c.send(`R ${1000 + k} F +0.100000000 good.${k} +10+20 1700000000\n`);
      await waitFor(
        () => s.herd.servers.get("M")!.store.get(`good.${k}`) !== undefined,
        2000,
        `good.${k}`,
      );
      const downs = s.events.filter((e) => e.kind === "link.down").length;
      await c.send(bytes);
      await c.waitEof(3000);
      await waitFor(
        () => s.events.filter((e) => e.kind === "link.down").length > downs,
        2000,
        "link down",
      );
      const down = s.events.findLast((e) => e.kind === "link.down")!;
      assert.match((down as { reason: string }).reason, /^peer sent garbage: /, what);
      assert.equal(linkUp(s, "F"), false, what);
      const log = await s.log();
      assert.match(log, new RegExp(`PEER REJECTED F \\(${reason.source}`), what);
      assert.match(log, /LINK DOWN F \(peer sent garbage: /, what);
      await c.close();
    }
    // The server still serves clients and took none of the garbage.
    assert.equal(await exchange(s.port, "WHATSAT g.loc 10 0\n"), "? WHATSAT g.loc 10 0\n");
    assert.match(
      await exchange(s.port, "WHATSAT good.0 10 0\n"),
      /^AT F \+0\.100000000 good\.0 \+10\+20 1700000000\n/,
    );
  } finally {
    await s.close();
  }
});

Deno.test("peer auth: an invalid record is skipped with an error event; the link and the records behind it go on", async () => {
  const s = await startM();
  const errors: string[] = [];
  const off = s.herd.bus.subscribe((e) => {
    if (e.kind === "error") errors.push(e.message);
  });
  try {
    const c = await connectAsF(s);
    const bad: [string, string][] = [
      ["invalid location", "R 1 F +0.000000000 g.loc +91+0 1700000000"],
      ["bad diff", "R 2 F 0.5 g.diff +1+1 1700000000"],
      ["bad seq", "R x F +0.000000000 g.seq +1+1 1700000000"],
      ["client ID over 256 bytes", `R 3 F +0.000000000 ${"c".repeat(257)} +1+1 1700000000`],
      ["origin over 64 bytes", `R 4 ${"F".repeat(65)} +0.000000000 g.origin +1+1 1700000000`],
      // Longer than any valid record's peer line: discarded as it streams, then skipped.
      ["overlong line", "R " + "9".repeat(300 * 1024)],
    ];
    const downs = s.events.filter((e) => e.kind === "link.down").length;
    let text = "";
    for (const [k, [, line]] of bad.entries()) {
      text += `${line}\n` + `R ${100 + k} F +0.100000000 after.${k} +10+20 1700000000\n`;
    }
    await c.send(text);
    const store = s.herd.servers.get("M")!.store;
    await waitFor(() => store.get(`after.${bad.length - 1}`) !== undefined, 5000, "records after");
    for (let k = 0; k < bad.length; k++) assert.ok(store.get(`after.${k}`), `after.${k}`);
    assert.equal(store.size, bad.length, "none of the invalid records was stored");
    assert.equal(linkUp(s, "F"), true, "the link stays up");
    assert.equal(s.events.filter((e) => e.kind === "link.down").length, downs, "never dropped");
    assert.equal(errors.length, bad.length, errors.join("\n"));
    for (const m of errors) assert.match(m, /^skipped from F: (bad record|overlong line)/);
    const log = await s.log();
    assert.match(log, /ERROR record-invalid: skipped from F: bad record/);
    off();
    await c.close();
  } finally {
    await s.close();
  }
});

Deno.test("peer auth: a half-open peer is detected by heartbeats (accepting side)", async () => {
  const s = await startM();
  try {
    const c = await connectAsF(s);
    const t0 = performance.now();
    // F goes silent: it reads M's PINGs but never writes again.
    await waitFor(() => !linkUp(s, "F"), 6000, "M to give up on the silent F");
    const ms = performance.now() - t0;
    const down = s.events.findLast((e) => e.kind === "link.down")!;
    assert.equal((down as { reason: string }).reason, "heartbeat timeout");
    assert.ok(ms >= 2500 && ms <= 4500, `detected after ${ms.toFixed(0)} ms, expected 3-4 s`);
    assert.match(c.received, /\nPING\n/, "M sent heartbeats while F was silent");
    assert.match(await s.log(), /LINK DOWN F \(heartbeat timeout\)/);
    console.log(`  silent F dropped after ${ms.toFixed(0)} ms`);
    await c.close();
  } finally {
    await s.close();
  }
});

Deno.test("peer auth: a peer gone while we stream to it is detected by heartbeats (sending side)", async () => {
  // M holds more records than the socket buffers take; F asks for all of them, then neither
  // reads nor writes (a cut): M's write stays pending, which must not keep the link alive.
  const s = await startM();
  const store = s.herd.servers.get("M")!.store;
  const total = 400_000; // ~20 MB of R lines; loopback buffers take a few MB
  for (let i = 0; i < total; i++) {
    const time = "1700000000";
    store.offer({ origin: "M", diff: "+0.0", client: `bulk.${i}`, location: "+1+2", time }, -1);
  }
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
  try {
    const next = lineReader(conn);
    const send = (text: string) => conn.write(new TextEncoder().encode(text));
    const nonceD = newNonce();
    await send(`${hello("F", "M", nonceD)}\n`);
    const nonceA = (await next()).split(" ")[4];
    await send(
      `HERD2 PROOF ${await s.auth.sign(proofText("peer", "dialler", "F", "M", nonceD, nonceA))}\n`,
    );
    assert.equal(await next(), "HERD2 WELCOME M F");
    const sync = (await next()).split(" ");
    assert.equal(sync[0], "SYNC");
    const link = s.herd.servers.get("M")!.links.find((l) => l.peer === "F")!;
    await send(`SYNC f0f0f0f0 0 ${sync[1]} 0\n`); // nothing of M's yet: send it everything
    const t0 = performance.now();
    await waitFor(() => !link.up, 6000, "M to give up on F, gone while M streams to it");
    const took = performance.now() - t0;
    const down = s.events.findLast((e) => e.kind === "link.down")!;
    assert.equal((down as { reason: string }).reason, "heartbeat timeout");
    assert.ok(link.recordsSent < total, `the stream was still going (${link.recordsSent} sent)`);
    assert.ok(took >= 2500 && took <= 4500, `detected after ${took.toFixed(0)} ms, expected 3-4 s`);
    console.log(
      `  F dropped after ${took.toFixed(0)} ms, ${link.recordsSent} of ${total} records queued`,
    );
  } finally {
    conn.close();
    await s.close();
  }
});

Deno.test("peer auth: a half-open peer is detected by heartbeats (dialling side)", async () => {
  // Play Z: M dials us; we answer the handshake properly, then go silent.
  const { listener, herd } = withFakeZ();
  const auth = new HerdAuth(SECRET);
  const downs: string[] = [];
  herd.bus.subscribe((e) => {
    if (e.kind === "link.down" && e.peer === "Z") downs.push(e.reason);
  });
  const conns: Deno.Conn[] = [];
  try {
    await herd.start();
    const conn = await listener.accept();
    conns.push(conn);
    const buf = new Uint8Array(4096);
    const next = lineReader(conn);
    const [, , role, from, to, nonceD] = (await next()).split(" ");
    assert.deepEqual([role, from, to], ["peer", "M", "Z"]);
    const nonceA = newNonce();
    const macA = await auth.sign(proofText("peer", "acceptor", "M", "Z", nonceD, nonceA));
    await conn.write(new TextEncoder().encode(`HERD2 CHALLENGE Z M ${nonceA} ${macA}\n`));
    const [, , macD] = (await next()).split(" ");
    assert.ok(
      await auth.verify(proofText("peer", "dialler", "M", "Z", nonceD, nonceA), macD),
      "M proves the secret over our nonce",
    );
    await conn.write(new TextEncoder().encode(`HERD2 WELCOME Z M\n`));
    const link = herd.servers.get("M")!.links.find((l) => l.peer === "Z")!;
    await waitFor(() => link.up, 2000, "link M-Z up");
    const t0 = performance.now();
    // Keep reading (like a peer whose process hangs after the kernel acked), never write.
    const drain = (async () => {
      try {
        while ((await conn.read(buf)) !== null) { /* discard */ }
      } catch {
        // closed by M
      }
    })();
    await waitFor(() => downs.length > 0, 6000, "M to give up on the silent Z");
    const took = performance.now() - t0;
    assert.equal(downs[0], "heartbeat timeout");
    assert.ok(took >= 2500 && took <= 4500, `detected after ${took.toFixed(0)} ms, expected 3-4 s`);
    await drain;
    console.log(`  silent Z dropped after ${took.toFixed(0)} ms`);
  } finally {
    await herd.stop();
    listener.close();
    for (const c of conns) {
      try {
        c.close();
      } catch {
        // closed already
      }
    }
  }
});

Deno.test("peer auth: servers with different secrets never link, and both say why", async () => {
  const [a, b] = freePorts(2);
  const config = parseConfig({ servers: { A: { port: a, neighbors: ["B"] }, B: { port: b } } });
  const dir = await Deno.makeTempDir({ prefix: "peer-auth-" });
  const opts = { ...SERVER_DEFAULTS, places: createOfflineProvider() };
  const herdA = new Herd(config, { ...opts, secret: "secret-of-herd-one", only: ["A"] });
  const herdB = new Herd(config, { ...opts, secret: "secret-of-herd-two", only: ["B"] });
  const logsA = await openLogs(herdA.bus, dir, ["A"]);
  const logsB = await openLogs(herdB.bus, dir, ["B"]);
  try {
    await herdB.start();
    await herdA.start();
    // Both dial (backoff 25 ms, 50 ms, ...): each finds the other's proof bad, and tells it so.
    const logOf = async (name: string) => {
      await (name === "A" ? logsA : logsB).flush();
      return await Deno.readTextFile(`${dir}/${name}.log`);
    };
    await waitFor(
      async () => {
        const [logA, logB] = [await logOf("A"), await logOf("B")];
        return (logA.match(/PEER REJECTED B \(bad proof from B\)/g) ?? []).length >= 2 &&
          (logB.match(/PEER REJECTED A \(bad proof from A\)/g) ?? []).length >= 2 &&
          /PEER REJECTED \S+ \(A rejected our proof\)/.test(logB) &&
          /PEER REJECTED \S+ \(B rejected our proof\)/.test(logA);
      },
      5000,
      "A and B to refuse each other twice",
    );
    for (const name of ["A", "B"]) {
      const log = await logOf(name);
      assert.doesNotMatch(log, /LINK UP/);
      assert.doesNotMatch(log, /herd secret mismatch/);
    }
    assert.equal(herdA.servers.get("A")!.links[0].up, false);
  } finally {
    await herdA.stop();
    await herdB.stop();
    await logsA.close();
    await logsB.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("peer auth: a dialler refuses an acceptor whose proof is wrong or replayed, and says why", async () => {
  // Play Z, whom M dials: first a correct CHALLENGE (recorded), then a wrong one, then the
  // recorded one again (a replay: it proves the secret over the old dial's nonce).
  const { m, listener, herd } = withFakeZ();
  const dir = await Deno.makeTempDir({ prefix: "peer-auth-" });
  const logs = await openLogs(herd.bus, dir, ["M"]);
  const auth = new HerdAuth(SECRET);
  const conns: Deno.Conn[] = [];
  try {
    await herd.start();
    await exchange(m, "IAMAT dialler.kiwi +1+2 1700000000\n");
    const accept = async () => {
      const conn = await listener.accept();
      conns.push(conn);
      const next = lineReader(conn);
      const nonceD = (await next()).split(" ")[5];
      return { conn, next, nonceD };
    };
    // 1. A good challenge, recorded.
    const first = await accept();
    const nonceA = newNonce();
    const recorded = `HERD2 CHALLENGE Z M ${nonceA} ${await auth.sign(
      proofText("peer", "acceptor", "M", "Z", first.nonceD, nonceA),
    )}\n`;
    await first.conn.write(new TextEncoder().encode(recorded));
    assert.match(await first.next(), /^HERD2 PROOF [0-9a-f]{64}$/);
    first.conn.close(); // no WELCOME: M redials
    const cases: [string, (nonceD: string) => Promise<string>][] = [
      ["wrong secret", async (nonceD) => {
        const mac = await new HerdAuth("not-the-herd-secret").sign(
          proofText("peer", "acceptor", "M", "Z", nonceD, nonceA),
        );
        return `HERD2 CHALLENGE Z M ${nonceA} ${mac}\n`;
      }],
      ["replayed challenge", () => Promise.resolve(recorded)],
    ];
    for (const [what, challenge] of cases) {
      const { conn, next, nonceD } = await accept();
      await conn.write(new TextEncoder().encode(await challenge(nonceD)));
      assert.equal(await next(), "HERD2 REFUSED bad proof", what);
      await assert.rejects(next(), /EOF/, `${what}: M sends nothing more`);
      conn.close();
    }
    await waitFor(
      async () => {
        await logs.flush();
        const log = await Deno.readTextFile(`${dir}/M.log`);
        return (log.match(/PEER REJECTED Z \(bad proof from Z\)/g) ?? []).length >= 2;
      },
      3000,
      "M to log both refusals",
    );
    const link = herd.servers.get("M")!.links.find((l) => l.peer === "Z")!;
    assert.equal(link.up, false);
  } finally {
    await herd.stop();
    await logs.close();
    listener.close();
    for (const c of conns) {
      try {
        c.close();
      } catch {
        // closed already
      }
    }
    await Deno.remove(dir, { recursive: true });
  }
});
