/**
 * The herd over real TCP, in one process: framing, ordering, flooding, and bad input.
 */

import assert from "node:assert/strict";
import { exchange, splitReplies, startSeedHerd, TcpClient, waitFor } from "./_helpers/net.ts";
import type { PlacesProvider } from "../servers/places/provider.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";
import { formatTimeDiff } from "../servers/protocol.ts";
import { openLogPersistence } from "../servers/persist.ts";

const UCLA = "+34.068930-118.445127";

function nowTime(): string {
  const ms = Date.now();
  return `${Math.floor(ms / 1000)}.${String(ms % 1000).padStart(3, "0")}000000`;
}

Deno.test("IAMAT at Hill, then at once WHATSAT at two-hop Singleton returns Hill's AT line", async () => {
  await using t = await startSeedHerd();
  for (let i = 0; i < 20; i++) {
    const client = `kiwi-${i}.cs.ucla.edu`;
    const time = nowTime();
    const at = await exchange(t.port("Hill"), `IAMAT ${client} ${UCLA} ${time}\n`);
    assert.match(
      at,
      new RegExp(
        `^AT Hill [+-]\\d+\\.\\d{9} ${client.replace(/\./g, "\\.")} \\${UCLA} ${time}\n$`,
      ),
    );
    // No sleep: Singleton is two hops from Hill (Hill–Jaquez–Singleton, Hill–Smith–Singleton).
    // 10 s: the first search loads this process's offline index (seconds on a loaded box); what
    // is judged is which record answers, not how fast.
    const reply = await exchange(t.port("Singleton"), `WHATSAT ${client} 10 5\n`, 10_000);
    assert.ok(
      reply.startsWith(at),
      `WHATSAT ${i} did not start with the origin's AT line: ${reply.slice(0, 120)}`,
    );
    assert.ok(reply.endsWith("}\n\n"));
  }
});

Deno.test("offline WHATSAT near UCLA lists real places within 10 km, in the legacy layout", async () => {
  await using t = await startSeedHerd();
  await exchange(t.port("Smith"), `IAMAT ucla ${UCLA} ${nowTime()}\n`);
  const reply = await exchange(t.port("Campbell"), "WHATSAT ucla 10 20\n");
  const [atLine, ...rest] = reply.split("\n");
  assert.match(atLine, /^AT Smith [+-]\d+\.\d{9} ucla \+34\.068930-118\.445127 \d+\.\d+$/);
  const json = rest.join("\n");
  assert.ok(json.endsWith("}\n\n"));
  assert.ok(!json.slice(0, -2).includes("\n\n"), "no blank line inside the JSON");
  assert.match(json, / {3}"status" : "OK"/);
  const body = JSON.parse(json);
  const names = body.results.map((r: { name: string }) => r.name);
  for (const n of ["Westwood", "Beverly Hills", "Century City", "Santa Monica"]) {
    assert.ok(names.includes(n), `${n} missing from ${names.join(", ")}`);
  }
  for (const r of body.results) {
    const d = haversineKm(
      34.06893,
      -118.445127,
      r.geometry.location.lat,
      r.geometry.location.lng,
    );
    assert.ok(d <= 10, `${r.name} is ${d.toFixed(2)} km away`);
  }
  const bounded = JSON.parse(
    (await exchange(t.port("Campbell"), "WHATSAT ucla 10 2\n")).split("\n").slice(1).join("\n"),
  );
  assert.deepEqual(bounded.results.length, 2);
});

function haversineKm(lat1: number, lng1: number, lat2: number, lng2: number): number {
  const rad = Math.PI / 180;
  const a = Math.sin(((lat2 - lat1) * rad) / 2) ** 2 +
    Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(((lng2 - lng1) * rad) / 2) ** 2;
  return 2 * 6371.0088 * Math.asin(Math.sqrt(a));
}

/** A provider that answers after a delay, to prove a slow WHATSAT is not overtaken. */
function slowPlaces(ms: number): PlacesProvider {
  const inner = createOfflineProvider();
  return {
    name: "offline",
    async search(q) {
      await new Promise((r) => setTimeout(r, ms));
      return inner.search(q);
    },
  };
}

Deno.test("several commands on one connection are answered in order, even behind a slow WHATSAT", async () => {
  await using t = await startSeedHerd({ places: slowPlaces(300) });
  const c = await TcpClient.connect(t.port("Jaquez"));
  await c.send(
    `IAMAT a ${UCLA} 100\nWHATSAT a 5 1\nIAMAT b +1+1 200\nbogus\nWHATSAT a 5 0\nIAMAT c +2+2 300\n`,
  );
  const replies = await c.replies(6);
  assert.match(replies[0], /^AT Jaquez \S+ a \S+ 100\n$/);
  assert.ok(replies[1].startsWith(replies[0].slice(0, -1) + "\n{"), replies[1]);
  assert.match(replies[2], /^AT Jaquez \S+ b \+1\+1 200\n$/);
  assert.deepEqual(replies[3], "? bogus\n");
  assert.match(replies[4], /"results" : \[\]/);
  assert.match(replies[5], /^AT Jaquez \S+ c \+2\+2 300\n$/);
  await c.close();
});

Deno.test("a final line without LF is answered at EOF, and everything pending before close", async () => {
  await using t = await startSeedHerd({ places: slowPlaces(100) });
  const text = await exchange(t.port("Hill"), `IAMAT e ${UCLA} 1\nWHATSAT e 1 1\nIAMAT e +1+1 2`);
  const replies = splitReplies(text);
  assert.deepEqual(replies.length, 3);
  assert.match(replies[2], /^AT Hill \S+ e \+1\+1 2\n$/);
});

Deno.test("a partial line answers after 500 ms of silence, and not before", async () => {
  await using t = await startSeedHerd();
  const c = await TcpClient.connect(t.port("Smith"));
  const sent = performance.now();
  await c.send(`IAMAT p ${UCLA} 5`);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(c.received, "", "answered before the pause");
  const [reply] = await c.replies(1, 2000);
  const waited = performance.now() - sent;
  assert.match(reply, /^AT Smith \S+ p \S+ 5\n$/);
  assert.ok(waited >= 480, `answered after ${waited} ms`);
  // The connection stays usable.
  await c.send("WHATSAT p 1 0\n");
  await c.replies(2);
  await c.close();
});

Deno.test("partial-line timer can be turned off", async () => {
  await using t = await startSeedHerd({ partialLineMs: 0 });
  const c = await TcpClient.connect(t.port("Smith"));
  await c.send(`IAMAT p ${UCLA} 5`);
  await new Promise((r) => setTimeout(r, 800));
  assert.deepEqual(c.received, "");
  await c.send("\n");
  await c.replies(1);
  await c.close();
});

Deno.test("idle timeout: silence closes; bytes that arrived during our own stall keep it open", async () => {
  await using t = await startSeedHerd({ idleTimeoutMs: 400 });
  // Plain silence: closed after the timeout, not before.
  const quiet = await TcpClient.connect(t.port("Hill"));
  const opened = performance.now();
  await quiet.waitEof(5000);
  const after = performance.now() - opened;
  // Late timers (a loaded machine) each wait one more period, hence the loose upper bound.
  assert.ok(after >= 380 && after < 4000, `idle connection closed after ${after.toFixed(0)} ms`);

  // A keep-alive sent just before this process (and so the server) stalls past the deadline:
  // the late timer must not close a client whose bytes are waiting unread.
  const c = await TcpClient.connect(t.port("Hill"));
  await new Promise((r) => setTimeout(r, 100));
  await c.send("\n");
  const stallEnd = performance.now() + 700;
  while (performance.now() < stallEnd) {
    // busy: the event loop is blocked, as under a burst of synchronous work
  }
  await new Promise((r) => setTimeout(r, 150));
  assert.ok(!c.eof, "closed by a timer that fired late, with a keep-alive unread");
  await c.waitEof(5000);
  assert.deepEqual(c.received, "");
  await c.close();
  await quiet.close();
});

Deno.test("over the cap, handshake bytes sent just before our own short stall still get in", async () => {
  await using t = await startSeedHerd({ maxConnections: 1 });
  const held = await TcpClient.connect(t.port("Hill"));
  await held.send(`IAMAT held ${UCLA} 1\n`);
  await held.replies(1);
  // Over the cap: the first bytes decide within 1 s. They arrive at 950 ms, and this process
  // (so the server) stalls until ~50 ms past the window: not late enough for the timer to
  // count as late, so only reading what arrived before judging lets the handshake in.
  // The premise needs this process's 950 ms timer to fire before the window ends: on a loaded
  // box it may fire late, so such a try is not judged and the scenario is run again (bounded).
  // Under a parallel suite the read's completion may also reach the loop after the judgement
  // (it came with the next poll): a refusal is tried again, up to 4 judged tries. Judging
  // without reading refused every try (the defect this guards).
  let refusals = 0;
  for (let attempt = 1;; attempt++) {
    const c = await TcpClient.connect(t.port("Hill"));
    const opened = performance.now();
    await new Promise((r) => setTimeout(r, 950 - (performance.now() - opened)));
    await c.send("HERD2 HELLO peer Jaquez Hill");
    const sentAfter = performance.now() - opened;
    const stallEnd = opened + 1050;
    while (performance.now() < stallEnd) {
      // busy: the event loop is blocked, as under a burst of synchronous work
    }
    await c.waitEof(5000);
    await c.close();
    if (sentAfter >= 990) {
      assert.ok(attempt < 8, `in 8 tries the handshake was never sent within the window`);
      continue;
    }
    if (c.received.startsWith("? server busy") && ++refusals < 4) continue;
    assert.ok(
      !c.received.startsWith("? server busy"),
      `refused ${refusals} times although its handshake bytes were waiting unread (last sent after ${
        sentAfter.toFixed(0)
      } ms): ${JSON.stringify(c.received)}`,
    );
    break;
  }
  await held.close();
});

Deno.test("blank lines get no reply; CRLF is whitespace; fields echo byte for byte", async () => {
  await using t = await startSeedHerd();
  const id = "k\xc3\xa9\xff\x01"; // UTF-8, a lone 0xFF and a control byte
  const text = await exchange(
    t.port("Hill"),
    `\n \t \r\n  IAMAT ${id} +00.5-000.5 00012.34000\r\n\n`,
  );
  assert.match(text, /^AT Hill [+-]\d+\.\d{9} k\xc3\xa9\xff\x01 \+00\.5-000\.5 00012\.34000\n$/);
});

Deno.test("huge lines and random bytes get '?' and the server keeps serving", async () => {
  await using t = await startSeedHerd();
  const c = await TcpClient.connect(t.port("Campbell"));
  const huge = "IAMAT " + "x".repeat(200 * 1024) + " +1+1 1";
  await c.send(huge + "\n");
  const random = crypto.getRandomValues(new Uint8Array(4096)).map((b) => (b === 10 ? 32 : b));
  await c.send(random);
  await c.send("\nIAMAT ok +1+1 1\n");
  const replies = await c.replies(3, 5000);
  assert.ok(replies[0].startsWith("? IAMAT xxxx"), replies[0].slice(0, 40));
  assert.ok(replies[0].length < 2048, "only a prefix of an overlong line is echoed");
  assert.ok(replies[1].startsWith("? "));
  assert.match(replies[2], /^AT Campbell \S+ ok \+1\+1 1\n$/);
  await c.close();
});

Deno.test("a client-sent AT or peer handshake is refused with '?'", async () => {
  await using t = await startSeedHerd();
  const at = "AT Clark +0.263873386 kiwi +34.06-118.44 1520023934.9";
  assert.deepEqual(await exchange(t.port("Hill"), at + "\n"), `? ${at}\n`);
  const hello = "HERD2 HELLO peer Jaquez Hill " + "0".repeat(31);
  assert.deepEqual(await exchange(t.port("Hill"), hello + "\n"), `? ${hello}\n`);
  // The planted location is not known anywhere.
  assert.deepEqual(await exchange(t.port("Hill"), "WHATSAT kiwi 1 1\n"), "? WHATSAT kiwi 1 1\n");
});

Deno.test("stale IAMAT gets its own AT reply but changes nothing; newer replaces everywhere", async () => {
  await using t = await startSeedHerd();
  await exchange(t.port("Hill"), `IAMAT s ${UCLA} 2000\n`);
  const stale = await exchange(t.port("Singleton"), "IAMAT s +1+1 1000\n");
  assert.match(stale, /^AT Singleton \S+ s \+1\+1 1000\n$/);
  const w = await exchange(t.port("Smith"), "WHATSAT s 1 0\n");
  assert.match(w, /^AT Hill \S+ s \+34\.068930-118\.445127 2000\n/);
  await exchange(t.port("Campbell"), "IAMAT s +2+2 3000\n");
  await waitFor(
    async () => (await exchange(t.port("Hill"), "WHATSAT s 1 0\n")).startsWith("AT Campbell"),
    2000,
    "newer record at Hill",
  );
});

Deno.test("the AT reply's time difference is the server's receive time minus the client's", async () => {
  await using t = await startSeedHerd();
  const before = BigInt(Date.now()) * 1_000_000n;
  const reply = await exchange(t.port("Hill"), "IAMAT d +1+1 1700000000.123456789\n");
  const after = BigInt(Date.now() + 1) * 1_000_000n;
  const diff = reply.split(" ")[2];
  const lo = formatTimeDiff(before, "1700000000.123456789");
  const hi = formatTimeDiff(after, "1700000000.123456789");
  assert.ok(
    Number(diff) >= Number(lo) - 0.002 && Number(diff) <= Number(hi) + 0.002,
    `${lo} <= ${diff} <= ${hi}`,
  );
  assert.match(diff, /^\+\d+\.\d{9}$/);
});

Deno.test("a server restarted empty answers a WHATSAT sent at once from its catch-up, not with ?", async () => {
  // The CS 131 TA script restarts a server and asks it about a client reported elsewhere half a
  // second later: before its links are up and its neighbours have streamed what it missed.
  await using t = await startSeedHerd();
  for (let i = 0; i < 3; i++) {
    await t.herd.stopServer("Smith");
    await exchange(t.port("Hill"), `IAMAT restarted${i} +1+1 1\n`);
    await t.herd.startServer("Smith");
    const w = await exchange(t.port("Smith"), `WHATSAT restarted${i} 1 0\n`, 10_000);
    assert.ok(w.startsWith("AT Hill"), `restart ${i}: ${w}`);
  }
  // A client no server knows is still `?`, once the catch-up said so.
  await t.herd.stopServer("Smith");
  await t.herd.startServer("Smith");
  const started = performance.now();
  const u = await exchange(t.port("Smith"), "WHATSAT nobody.knows 1 0\n", 10_000);
  assert.deepEqual(u, "? WHATSAT nobody.knows 1 0\n");
  assert.ok(performance.now() - started < 3_500, "waited past the start-up bound");
  // With every neighbour away, no catch-up is coming: `?` at once, not after the bound.
  for (const n of ["Hill", "Singleton", "Campbell", "Smith"]) await t.herd.stopServer(n);
  await t.herd.startServer("Smith");
  const alone = performance.now();
  const a = await exchange(t.port("Smith"), "WHATSAT restarted0 1 0\n", 10_000);
  assert.deepEqual(a, "? WHATSAT restarted0 1 0\n");
  assert.ok(performance.now() - alone < 2_000, `${performance.now() - alone} ms with no neighbour`);
});

Deno.test("a restarted server's WHATSAT never sees an IAMAT pipelined after it on its connection", async () => {
  // The warm-up wait (above) must keep the rule that a command never sees a later command of
  // its own connection: when the catch-up ends first, the WHATSAT is `?` as on a warm server.
  const pipelined = async (port: number, client: string) => {
    await using c = await TcpClient.connect(port);
    await c.send(`WHATSAT ${client} 10 1\nIAMAT ${client} +34.068930-118.445127 1.5\n`);
    return await c.waitUntil((r) => /^AT /m.test(r), 15_000);
  };
  await using t = await startSeedHerd();
  const warm = await pipelined(t.port("Smith"), "warm.client");
  assert.ok(warm.startsWith("? WHATSAT warm.client"), warm);
  await t.herd.stopServer("Smith");
  // A slow first catch-up: the WHATSAT waits, the IAMAT after it is stored meanwhile.
  for (const n of ["Hill", "Campbell", "Singleton"]) t.herd.setLink(n, "Smith", { delayMs: 250 });
  await t.herd.startServer("Smith");
  const text = await pipelined(t.port("Smith"), "fresh.client");
  assert.ok(text.startsWith("? WHATSAT fresh.client"), `saw the later IAMAT: ${text}`);
});

Deno.test("a restarted server's WHATSAT for a client it knows from disk waits for the newer record its catch-up brings", async () => {
  // Found by an adversarial review: the warm-up wait covered only clients the restarted server
  // did not know at all, so one it knew from its record log was answered from the old record.
  const dir = await Deno.makeTempDir({ prefix: "herd-warm-known-" });
  try {
    await using t = await startSeedHerd({
      openPersistence: (name) => openLogPersistence(dir, name),
    });
    const clients = ["moving.client", "moving.pipelined"];
    for (const c of clients) {
      const old = (await exchange(t.port("Hill"), `IAMAT ${c} +1+1 1000\n`)).trimEnd();
      await waitFor(
        async () => (await exchange(t.port("Smith"), `WHATSAT ${c} 10 0\n`)).startsWith(old),
        5000,
        `Smith knows ${c}'s first record`,
      );
    }
    await t.herd.stopServer("Smith");
    // While Smith is down, the clients move; every other server knows it.
    const newer = new Map<string, string>();
    for (const c of clients) {
      newer.set(c, (await exchange(t.port("Hill"), `IAMAT ${c} +2+2 2000\n`)).trimEnd());
    }
    // A first catch-up that takes a little while (a loaded box, a slow neighbour).
    for (const n of ["Hill", "Campbell", "Singleton"]) t.herd.setLink(n, "Smith", { delayMs: 250 });
    await t.herd.startServer("Smith");
    // Asked at once, as the CS 131 script asks a restarted server.
    const w = await exchange(t.port("Smith"), "WHATSAT moving.client 10 0\n", 10_000);
    assert.ok(
      w.startsWith(newer.get("moving.client") + "\n"),
      `restarted Smith answered from its stale record: ${w.split("\n")[0]}`,
    );
    // Still never this connection's later IAMAT, though it is newer than both.
    await using c = await TcpClient.connect(t.port("Smith"));
    await c.send("WHATSAT moving.pipelined 10 0\nIAMAT moving.pipelined +3+3 3000\n");
    const text = await c.waitUntil((r) => /^AT Smith /m.test(r), 15_000);
    assert.ok(
      text.startsWith(newer.get("moving.pipelined") + "\n"),
      `expected the herd's record, got: ${text.split("\n")[0]}`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("a restarted server answers at once a WHATSAT for a client stored since its start, however slow its catch-up", async () => {
  // Found by a review: the warm-up wait (above) held every WHATSAT for a known client, a record
  // this connection's own IAMAT had just stored included, until the first catch-up ended.
  await using t = await startSeedHerd();
  await t.herd.stopServer("Smith");
  for (const n of ["Hill", "Campbell", "Singleton"]) t.herd.setLink(n, "Smith", { delayMs: 1500 });
  await t.herd.startServer("Smith");
  // Two connections: the IAMAT's own AT reply waits for the warm-up, so that its record has
  // reached the neighbours (restart_flood.net_test.ts), and a WHATSAT behind it on the same
  // connection is answered after it, in order. The record is stored at once all the same.
  await using c = await TcpClient.connect(t.port("Smith"));
  await using q = await TcpClient.connect(t.port("Smith"));
  const sent = performance.now();
  await c.send("IAMAT here.now +34.068930-118.445127 1.5\n");
  await q.send("WHATSAT here.now 10 1\n");
  const text = await q.waitUntil((r) => r.endsWith("}\n\n"), 10_000);
  const ms = performance.now() - sent;
  assert.match(text, /^AT Smith \S+ here\.now /);
  assert.ok(
    ms < 1000,
    `the WHATSAT waited ${Math.round(ms)} ms for a catch-up it needs nothing from`,
  );
  assert.match(await c.waitUntil((r) => r.endsWith("\n"), 10_000), /^AT Smith \S+ here\.now /);
});

Deno.test("a stopped server's neighbours keep serving; restarted, it catches up", async () => {
  await using t = await startSeedHerd();
  await t.herd.stopServer("Smith");
  await exchange(t.port("Hill"), "IAMAT while-down +1+1 1\n");
  const w = await exchange(t.port("Campbell"), "WHATSAT while-down 1 0\n");
  assert.ok(w.startsWith("AT Hill"), w);
  await t.herd.startServer("Smith");
  await waitFor(
    async () => (await exchange(t.port("Smith"), "WHATSAT while-down 1 0\n")).startsWith("AT Hill"),
    5000,
    "Smith catches up",
  );
});

/** A seed herd with durable stores in a temp dir, for restart tests; the dir goes at the end. */
async function withDurableHerd(
  prefix: string,
  body: (t: Awaited<ReturnType<typeof startSeedHerd>>) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    await using t = await startSeedHerd({
      openPersistence: (name) => openLogPersistence(dir, name),
    });
    await body(t);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** IAMATs `client` at Hill and waits until every one of `at` answers that record. */
async function reportEverywhere(
  t: Awaited<ReturnType<typeof startSeedHerd>>,
  client: string,
  location: string,
  time: string,
  at: readonly string[],
): Promise<string> {
  const line = (await exchange(t.port("Hill"), `IAMAT ${client} ${location} ${time}\n`)).trimEnd();
  for (const n of at) {
    await waitFor(
      async () => (await exchange(t.port(n), `WHATSAT ${client} 10 0\n`)).startsWith(line + "\n"),
      5000,
      `${n} knows ${line}`,
    );
  }
  return line;
}

Deno.test("two neighbours restarted together: the WHATSAT at one waits for the informed neighbours, not the other restarted one", async () => {
  // Found by an adversarial review: the warm-up ended at the first complete catch-up stream,
  // whoever sent it; the other restarted server (itself warming up, never told of the update)
  // streamed first, and the WHATSAT was answered from the stale record on disk.
  await withDurableHerd("herd-warm-pair-", async (t) => {
    await reportEverywhere(t, "pair.client", "+1+1", "1000", ["Smith", "Campbell"]);
    // Seed topology: Smith's neighbours are Hill, Singleton and Campbell; Campbell's are
    // Singleton and Smith. Both go down (the TA script's "drop Smith Campbell").
    await t.herd.stopServer("Smith");
    await t.herd.stopServer("Campbell");
    const newer = await reportEverywhere(t, "pair.client", "+2+2", "2000", ["Singleton"]);
    // The informed neighbours are a little slower than the restarted one (a loaded box).
    t.herd.setLink("Hill", "Smith", { delayMs: 400 });
    t.herd.setLink("Singleton", "Smith", { delayMs: 400 });
    t.herd.setLink("Singleton", "Campbell", { delayMs: 400 });
    await t.herd.startServer("Campbell");
    await t.herd.startServer("Smith");
    const w = await exchange(t.port("Smith"), "WHATSAT pair.client 10 0\n", 10_000);
    assert.ok(
      w.startsWith(newer + "\n"),
      `restarted Smith answered from its stale record: ${w.split("\n")[0]} (herd has: ${newer})`,
    );
  });
});

Deno.test("the warm-up ends once every neighbour streamed or failed its dial, well before its bound", async () => {
  // Control for the test above: waiting for every neighbour costs only the streams' own time.
  await using t = await startSeedHerd();
  const unknown = async (what: string) => {
    const sent = performance.now();
    const u = await exchange(t.port("Smith"), "WHATSAT nobody.at.all 1 0\n", 10_000);
    const ms = performance.now() - sent;
    assert.deepEqual(u, "? WHATSAT nobody.at.all 1 0\n");
    // The bound is 3 s plus the 250 ms grace.
    assert.ok(ms < 2_000, `${what}: waited ${Math.round(ms)} ms, as for the bound`);
  };
  await t.herd.stopServer("Smith");
  await t.herd.stopServer("Campbell");
  await t.herd.startServer("Campbell");
  await t.herd.startServer("Smith");
  await unknown("every neighbour up and streaming");
  // Campbell stays down: its dial fails, nothing is waited for from it.
  await t.herd.stopServer("Smith");
  await t.herd.stopServer("Campbell");
  await t.herd.startServer("Smith");
  await unknown("one neighbour down");
});

/** Restarts Smith with a slow first catch-up after `moving.client` moved while it was down. */
async function restartBehind(t: Awaited<ReturnType<typeof startSeedHerd>>, delayMs: number) {
  await reportEverywhere(t, "moving.client", "+1+1", "1000", ["Smith"]);
  await t.herd.stopServer("Smith");
  const newer = await reportEverywhere(t, "moving.client", "+2+2", "2000", []);
  for (const n of ["Hill", "Campbell", "Singleton"]) t.herd.setLink(n, "Smith", { delayMs });
  await t.herd.startServer("Smith");
  return newer;
}

Deno.test("every WHATSAT during a restarted server's warm-up gets the newer record, not only the first 256", async () => {
  // Found by an adversarial review: the warm-up wait for a known client shared the waiter caps
  // (store.ts MAX_WAITERS_PER_CLIENT, MAX_WAITERS); past one it answered the record from disk.
  await withDurableHerd("herd-warm-cap-", async (t) => {
    const newer = await restartBehind(t, 400);
    // 12 clients x 25 pipelined WHATSATs for the one client (each connection has at most 32 in
    // flight, connection.ts): 300 waiters, past the per-client cap of 256.
    const CONNS = 12, EACH = 25;
    const texts = await Promise.all(
      Array.from(
        { length: CONNS },
        () => exchange(t.port("Smith"), "WHATSAT moving.client 10 0\n".repeat(EACH), 15_000),
      ),
    );
    const firstLines = texts.flatMap((text) => splitReplies(text).map((r) => r.split("\n")[0]));
    assert.equal(firstLines.length, CONNS * EACH);
    const stale = firstLines.filter((l) => !l.startsWith(newer));
    assert.equal(
      stale.length,
      0,
      `${stale.length} of ${firstLines.length} stale, e.g. ${stale[0]}`,
    );
  });
});

Deno.test("4,096 WHATSATs for unknown clients during the warm-up do not make a known client's answer stale", async () => {
  // Anyone can fill the waiter cap with clients nobody knows (each waits up to the warm-up's
  // bound): a known client's WHATSAT after them still waits. The neighbours' catch-up is slower
  // than the warm-up's 3 s bound, so within it the newer record comes only from a client of
  // Smith's, sent once the WHATSAT waits: no race with the catch-up, however loaded the box.
  await withDurableHerd("herd-warm-ghosts-", async (t) => {
    await reportEverywhere(t, "moving.client", "+1+1", "1000", ["Smith"]);
    for (const n of ["Hill", "Campbell", "Singleton"]) {
      t.herd.setLink(n, "Smith", { delayMs: 10_000 });
    }
    const smith = t.herd.servers.get("Smith")!;
    for (let attempt = 1;; attempt++) {
      await t.herd.stopServer("Smith");
      await t.herd.startServer("Smith");
      const started = performance.now();
      // 128 connections x 32 in flight: every ghost waits at once.
      const ghosts = Array.from({ length: 128 }, (_, c) =>
        exchange(
          t.port("Smith"),
          Array.from({ length: 32 }, (_, i) => `WHATSAT ghost.${c}.${i} 1 0\n`).join(""),
          20_000,
        ));
      // The ghosts must all wait well inside the warm-up's 3 s bound; past it they are answered
      // and the cap never fills. A box too loaded for that (load 20: >20 s once) proves nothing
      // this round: the ghosts are answered at the warm-up's end, and Smith restarts.
      const full = () => smith.store.waiting >= 4096;
      const late = () => performance.now() - started > 2_000;
      await waitFor(() => full() || late(), 20_000, "4,096 ghosts waiting, or 2 s gone");
      if (!full() || late()) {
        if (attempt === 8) {
          throw new Error(
            `4,096 ghosts never waited within 2 s of Smith's start (${attempt} tries)`,
          );
        }
        await Promise.all(ghosts);
        continue;
      }
      await using c = await TcpClient.connect(t.port("Smith"));
      await c.send("WHATSAT moving.client 10 0\n");
      // It waits (one waiter more), or (past a cap) was answered at once.
      await waitFor(
        () => smith.store.waiting > 4096 || c.received.length > 0,
        5_000,
        "the known WHATSAT waits or is answered",
      );
      const newer = (await exchange(t.port("Smith"), "IAMAT moving.client +2+2 2000\n")).trimEnd();
      assert.match(newer, /^AT Smith \S+ moving\.client \+2\+2 2000$/);
      const w = await c.waitUntil((r) => r.endsWith("\n\n"), 10_000);
      assert.ok(
        w.startsWith(newer + "\n"),
        `answered past the cap: ${w.split("\n")[0]} (${newer})`,
      );
      for (const text of await Promise.all(ghosts)) {
        assert.ok(splitReplies(text).every((r) => r.startsWith("? WHATSAT ghost.")), text);
      }
      return;
    }
  });
});
