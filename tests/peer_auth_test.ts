/**
 * Peers must prove they belong (issue 5). Against one in-process server "M" with two fake
 * neighbours played by the test: "F" (sorts first, so F dials M) and "Z" (M dials Z).
 *
 * - a HELLO with a wrong secret, from a non-neighbour, for another server, stale or replayed is
 *   refused, logged as `PEER REJECTED`, and answered like any invalid client line (`? HERD1 ...`);
 * - a client cannot speak the server protocol: `AT ...`, `R ...`, `SYNC ...`, a HELLO after the
 *   first line all get `? ...`;
 * - an authenticated peer that sends garbage is dropped and logged; its good records before the
 *   garbage were taken;
 * - a half-open peer (authenticated, then silent) is detected by heartbeats on both the accepting
 *   and the dialling side: the link goes down within 3-4 s;
 * - two real servers with different secrets never link, and both log why.
 */

import assert from "node:assert/strict";
import { HerdAuth, newNonce } from "../servers/auth.ts";
import { parseConfig } from "../servers/config.ts";
import type { HerdEvent } from "../servers/events.ts";
import { Herd } from "../servers/herd.ts";
import { openLogs } from "../servers/log.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";
import { exchange, freePorts, TcpClient, waitFor } from "./_helpers/net.ts";

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

/** Starts M (neighbours F and Z, both fake) with its log file in a temp dir. */
async function startM(secret = SECRET): Promise<Setup> {
  const [m, f, z] = freePorts(3);
  const config = parseConfig({
    servers: {
      F: { port: f, neighbors: ["M"] },
      M: { port: m, neighbors: ["Z"] },
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

/** A HELLO line from `from` to `to`, signed with `auth`. */
async function hello(
  auth: HerdAuth,
  from: string,
  to: string,
  ms = Date.now(),
  nonce = newNonce(),
): Promise<string> {
  const mac = await auth.sign(`HELLO|${from}|${to}|${ms}|${nonce}`);
  return `HERD1 HELLO ${from} ${to} ${ms} ${nonce} ${mac}`;
}

/** Connects as F with a good handshake; returns the connection once M's WELCOME and SYNC came. */
async function connectAsF(s: Setup): Promise<TcpClient> {
  const c = await TcpClient.connect(s.port);
  const nonce = newNonce();
  await c.send(`${await hello(s.auth, "F", "M", Date.now(), nonce)}\n`);
  const text = await c.waitUntil((t) => /\nSYNC [^\n]*\n/.test(t), 3000);
  const welcome = text.slice(0, text.indexOf("\n")).split(" ");
  assert.deepEqual(welcome.slice(0, 4), ["HERD1", "WELCOME", "M", "F"]);
  assert.ok(await s.auth.verify(`WELCOME|M|F|${nonce}`, welcome[4]), "M's WELCOME is signed");
  await waitFor(() => linkUp(s, "F"), 2000, "link M-F up");
  return c;
}

Deno.test("peer auth: bad handshakes are refused, logged, and answered as invalid lines", async () => {
  const s = await startM();
  try {
    const wrong = new HerdAuth("not-the-herd-secret");
    const now = Date.now();
    const cases: [string, string, RegExp][] = [
      ["wrong secret", await hello(wrong, "F", "M"), /bad herd secret from F/],
      ["not a neighbour", await hello(s.auth, "Q", "M"), /Q is not a neighbour/],
      ["for another server", await hello(s.auth, "F", "Z"), /handshake for Z, not M/],
      ["stale", await hello(s.auth, "F", "M", now - 10 * 60_000), /stale or replayed/],
      ["malformed", "HERD1 HELLO F M", /malformed handshake/],
      ["garbage mac", `HERD1 HELLO F M ${now} ${newNonce()} zz`, /bad herd secret from F/],
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
      assert.equal(linkUp(s, "F"), false, what);
    }

    // A replayed HELLO: the first one links, the same line again is refused.
    const line = await hello(s.auth, "F", "M");
    const first = await TcpClient.connect(s.port);
    await first.send(`${line}\n`);
    await first.waitUntil((t) => t.startsWith("HERD1 WELCOME M F "));
    const replay = await TcpClient.connect(s.port);
    await replay.send(`${line}\n`);
    assert.equal((await replay.replies(1))[0], `? ${line}\n`);
    assert.match(await s.log(), /PEER REJECTED \S+ \(stale or replayed handshake from F\)/);
    await first.close();
    await replay.close();
  } finally {
    await s.close();
  }
});

Deno.test("peer auth: a client cannot speak the server-to-server protocol", async () => {
  const s = await startM();
  try {
    const validHello = await hello(s.auth, "F", "M");
    const lines = [
      "AT Clark +0.263873386 kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503",
      "R 1 Clark +0.263873386 kiwi +34.06-118.44 1520023934.9",
      "S 5",
      "SYNC abcd1234 10 - 0",
      "PING",
      "CAUGHTUP 3",
      `HERD1 WELCOME M F ${"0".repeat(64)}`,
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
    assert.match(log, /ERROR skipped from F: bad record/);
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

Deno.test("peer auth: a half-open peer is detected by heartbeats (dialling side)", async () => {
  // Play Z: M dials us; we answer WELCOME properly, then go silent.
  const [m, f, z] = freePorts(3);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: z });
  const config = parseConfig({
    servers: { F: { port: f, neighbors: ["M"] }, M: { port: m, neighbors: ["Z"] }, Z: { port: z } },
  });
  const herd = new Herd(config, {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: SECRET,
    only: ["M"],
  });
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
    let text = "";
    while (!text.includes("\n")) {
      const n = await conn.read(buf);
      if (n === null) throw new Error("M hung up during the handshake");
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    const [, , from, to, ms, nonce, mac] = text.slice(0, text.indexOf("\n")).split(" ");
    assert.equal(from, "M");
    assert.equal(to, "Z");
    assert.ok(await auth.verify(`HELLO|M|Z|${ms}|${nonce}`, mac), "M's HELLO is signed");
    const welcome = await auth.sign(`WELCOME|Z|M|${nonce}`);
    await conn.write(new TextEncoder().encode(`HERD1 WELCOME Z M ${welcome}\n`));
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
    // A dials B (backoff 100 ms, 200 ms, ...): wait for two refusals, then check no link came up.
    await waitFor(
      async () => {
        await logsB.flush();
        const log = await Deno.readTextFile(`${dir}/B.log`);
        return (log.match(/PEER REJECTED \S+ \(bad herd secret from A\)/g) ?? []).length >= 2;
      },
      5000,
      "B to refuse A twice",
    );
    await logsA.flush();
    const logA = await Deno.readTextFile(`${dir}/A.log`);
    assert.match(
      logA,
      /PEER REJECTED B \(neighbour refused our handshake \(herd secret mismatch\?\)\)/,
    );
    assert.doesNotMatch(logA, /LINK UP/);
    assert.doesNotMatch(await Deno.readTextFile(`${dir}/B.log`), /LINK UP/);
    assert.equal(herdA.servers.get("A")!.links[0].up, false);
  } finally {
    await herdA.stop();
    await herdB.stop();
    await logsA.close();
    await logsB.close();
    await Deno.remove(dir, { recursive: true });
  }
});
