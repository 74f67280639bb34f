/**
 * Links (servers/peers.ts) over real sockets: one in-process server M with two neighbours, F and
 * G, both played by the test, so every line M writes to each is seen as written. Receipts on a
 * link: what counts as a neighbour's receipt, and what M writes for records the peer already has.
 */

import assert from "node:assert/strict";
import { HerdAuth } from "../servers/auth.ts";
import { parseConfig } from "../servers/config.ts";
import { newNonce } from "../servers/handshake.ts";
import { formatDigest, formatRecord, parseLinkLine, proofText } from "../servers/wire.ts";
import { BucketDigest, bucketOf, DigestReader } from "../servers/digest.ts";
import type { AtFields } from "../servers/record.ts";
import { Herd } from "../servers/herd.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import type { LinkOptions } from "../servers/peers.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";
import { freePorts, TcpClient, waitFor } from "./_helpers/net.ts";
import type { HerdEvent } from "../servers/events.ts";
import { HerdMetrics } from "../servers/ops/metrics.ts";
import { parseExposition } from "./_helpers/prom.ts";
import { compareRecords } from "../servers/record.ts";
import { recordFields } from "../servers/store.ts";

const SECRET = "peers-test-secret-0123456789abcdef";
const RECORD = "R 1 F +0.100000000 kiwi +34.068930-118.445127 1700000000.5";

/** Dials M as `name` with a good handshake; returns the link once M's SYNC came. */
async function dialAs(name: string, port: number, auth: HerdAuth): Promise<TcpClient> {
  const c = await TcpClient.connect(port);
  const nonceD = newNonce();
  await c.send(`HERD2 HELLO peer ${name} M ${nonceD}\n`);
  const text = await c.waitUntil((t) => t.includes("\n"), 5000);
  const nonceA = text.slice(0, text.indexOf("\n")).split(" ")[4];
  await c.send(
    `HERD2 PROOF ${await auth.sign(proofText("peer", "dialler", name, "M", nonceD, nonceA))}\n`,
  );
  await c.waitUntil((t) => /\nSYNC [^\n]*\n/.test(t), 5000);
  return c;
}

/**
 * M with live links from F and G (both past their catch-up unless `gCatchingUp`); the receipt
 * wait is far longer than any test step, so a receipt that comes is never a timed-out one.
 */
async function startM(gCatchingUp = false, fCatchingUp = false, receiptWaitMs = 60_000) {
  const { herd, m } = herdM(receiptWaitMs);
  const late: unknown[] = [];
  const off = herd.bus.subscribe((e) => e.kind === "receipt.late" && late.push(e));
  await herd.start();
  const auth = new HerdAuth(SECRET);
  const peers: TcpClient[] = [];
  try {
    for (const name of ["F", "G"]) {
      const c = await dialAs(name, m, auth);
      peers.push(c);
      const catchingUp = name === "G" ? gCatchingUp : fCatchingUp;
      const caughtUp = catchingUp ? "" : "CAUGHTUP 0\n";
      await c.send(`SYNC e${name} 0 - 0\n${caughtUp}`);
      await c.waitUntil((t) => t.includes("\nCAUGHTUP 0\n"), 5000);
    }
    const mServer = herd.servers.get("M")!;
    await waitFor(() => mServer.links.every((l) => l.up), 5000, "both links up");
  } catch (err) {
    for (const p of peers) await p.close();
    await herd.stop();
    throw err;
  }
  const [fc, gc] = peers;
  // Heartbeats, so M never drops a link that is only waiting.
  const beat = setInterval(() => peers.forEach((p) => p.send("PING\n").catch(() => {})), 500);
  return {
    f: fc,
    g: gc,
    port: m,
    late,
    herd,
    async [Symbol.asyncDispose]() {
      clearInterval(beat);
      off();
      await fc.close();
      await gc.close();
      await herd.stop();
    },
  };
}

/**
 * M alone in this process, its neighbours F and G to be played by the test. M's own heartbeat
 * would carry an owed `S` (see the last test); the test's peers beat.
 */
function herdM(receiptWaitMs: number, link: Partial<LinkOptions> = {}) {
  const [m, f, g] = freePorts(3);
  const config = parseConfig({
    servers: { F: { port: f, neighbors: ["M"] }, G: { port: g, neighbors: ["M"] }, M: { port: m } },
  });
  const herd = new Herd(config, {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: SECRET,
    only: ["M"],
    receiptWaitMs,
    link: { ...SERVER_DEFAULTS.link, heartbeatMs: 30_000, ...link },
  });
  return { herd, m };
}

/** Text received after `mark` (what was there when the step started). */
const after = (c: TcpClient, mark: number) => c.received.slice(mark);

/**
 * F hands M a new record, which M floods to G (and waits for G's receipt before receipting
 * F's). Returns where F's and G's received text stood before.
 */
async function floodFromF(m: { f: TcpClient; g: TcpClient }) {
  const gMark = m.g.received.length;
  const fMark = m.f.received.length;
  await m.f.send(`${RECORD}\n`);
  await m.g.waitUntil((t) => t.slice(gMark).includes("R 1 F +0.100000000 kiwi "), 5000);
  return { fMark, gMark };
}

Deno.test("receipts on a link: a neighbour that never receipts costs one bounded wait, not one per IAMAT, and is waited for again once it receipts", async () => {
  const BOUND = 1000;
  await using m = await startM(false, false, BOUND);
  await using client = await TcpClient.connect(m.port);
  let sent = 0;
  const iamat = async () => {
    const started = performance.now();
    await client.send(`IAMAT mute${++sent} +34.068930-118.445127 1700000001.5\n`);
    await client.replies(sent, 10_000);
    return performance.now() - started;
  };
  // F and G read every `R` line and never answer one: the first reply waits the bound...
  const first = await iamat();
  assert.ok(first >= BOUND * 0.9, `the first reply waited ${first} ms, not the ${BOUND} ms bound`);
  // ...and the next ones do not wait on them at all (stopped early when they do, so an unfixed
  // server fails in seconds, not 100 bounds).
  const times: number[] = [];
  const loopStarted = performance.now();
  while (times.length < 100 && performance.now() - loopStarted < 20_000) times.push(await iamat());
  times.sort((a, b) => a - b);
  const median = times[times.length >> 1];
  assert.equal(times.length, 100, `100 IAMATs took over 20 s (median ${median} ms)`);
  assert.ok(median < BOUND / 10, `median reply ${median} ms of 100 after the first timed out`);
  // Counted once per neighbour, not once per IAMAT.
  assert.equal(m.late.length, 1, `late receipt events: ${JSON.stringify(m.late)}`);
  assert.deepEqual((m.late[0] as { peers: string[] }).peers.toSorted(), ["F", "G"]);

  // Both receipt everything so far: they are waited for again. F receipts the next record at
  // once; G holds its receipt, and the reply waits for it.
  const rLine = (n: number) => new RegExp(`\nR (\\d+) \\S+ \\S+ mute${n} `);
  await m.f.waitUntil((t) => rLine(sent).test(t), 10_000);
  await m.g.waitUntil((t) => rLine(sent).test(t), 10_000);
  const through = Number(rLine(sent).exec(m.g.received)![1]);
  await m.f.send(`A 1 ${through}\n`);
  await m.g.send(`A 1 ${through}\n`);
  const fMark = m.f.received.length;
  const gMark = m.g.received.length;
  const before = client.received.length;
  await client.send(`IAMAT mute${++sent} +34.068930-118.445127 1700000002.5\n`);
  await m.f.waitUntil((t) => rLine(sent).test(t.slice(fMark - 1)), 10_000);
  const seq = Number(rLine(sent).exec(m.f.received.slice(fMark - 1))![1]);
  await m.f.send(`A ${seq} ${seq}\n`);
  await m.g.waitUntil((t) => rLine(sent).test(t.slice(gMark - 1)), 10_000);
  await new Promise((r) => setTimeout(r, BOUND / 5));
  assert.equal(client.received.slice(before), "", "the reply went before G's receipt");
  const gReceipted = performance.now();
  await m.g.send(`A ${seq} ${seq}\n`);
  await client.replies(sent, 10_000);
  assert.ok(performance.now() - gReceipted < BOUND / 2, "the reply waited out the bound");
  assert.equal(m.late.length, 1, "and G's receipt was in time");
});

Deno.test("receipts on a link: a neighbour that sends us the very record we wait on has receipted it (it holds it)", async () => {
  await using m = await startM();
  const { fMark, gMark } = await floodFromF(m);
  // G never sends an `A` line, but it got the same record elsewhere and streams it to M: the
  // stream only carries what G holds, which is all G's receipt would have said.
  await m.g.send(`${RECORD}\n`);
  await m.f.waitUntil((t) => /\nA 1 1\n/.test("\n" + t.slice(fMark)), 10_000);
  // And G's record, a duplicate at M, is receipted: in M's next write to G, since M's own copy
  // went to G (the copies crossed: see the next test), here the one G's second copy asks for.
  await m.g.send(`${RECORD.replace("R 1 ", "R 2 ")}\n`);
  await m.g.waitUntil((t) => /\nA 1 2\n/.test("\n" + t.slice(gMark)), 10_000);
  assert.deepEqual(m.late, [], "no receipt was waited out");
});

Deno.test("receipts on a link: when M's copy and the peer's cross, M's `A` for the peer's copy rides in M's next write, never alone", async () => {
  await using m = await startM();
  const { fMark, gMark } = await floodFromF(m);
  // G got the same record elsewhere and sends it to M: the two copies crossed. G settles its
  // wait for M's receipt on reading M's copy (the test above, at G's end), so M's `A` for G's
  // copy takes no write of its own...
  await m.g.send(`${RECORD}\n`);
  await m.f.waitUntil((t) => /\nA 1 1\n/.test("\n" + t.slice(fMark)), 10_000);
  await new Promise((r) => setTimeout(r, 300));
  const crossed = after(m.g, gMark).replaceAll("PING\n", "");
  assert.match(crossed, /^R 1 F \+0\.100000000 kiwi [^\n]*\n$/, `M wrote G more: ${crossed}`);
  // ...but it is not lost: it rides in M's next write to G (a record F floods).
  const next = m.g.received.length;
  await m.f.send(`${PAPAYA}\n`);
  await m.g.waitUntil((t) => t.slice(next).includes(" papaya "), 10_000);
  assert.match(after(m.g, next).replaceAll("PING\n", ""), /^A 1 1\nR 2 F [^\n]* papaya /);
  // A copy of a record M did not send G since G sent it (kiwi again: M knows G holds it, its
  // stream skips it) takes a write at once, as any line G may wait on; papaya's crossed copy
  // rides in it.
  const again = m.g.received.length;
  await m.g.send(`${PAPAYA.replace("R 2 ", "R 3 ")}\n${RECORD.replace("R 1 ", "R 4 ")}\n`);
  await m.g.waitUntil((t) => /\nA 2 4\n/.test("\n" + t.slice(again)), 10_000);
  assert.deepEqual(m.late, [], "no receipt was waited out");
});

Deno.test("receipts on a link: another version of the record, or one in a catch-up stream, is no receipt", async () => {
  for (const gCatchingUp of [false, true]) {
    await using m = await startM(gCatchingUp);
    const { fMark, gMark } = await floodFromF(m);
    // An older version of the client's record (stale at M), or, when G is still catching up,
    // the same record resent: neither says G holds what M sent it.
    await m.g.send(gCatchingUp ? `${RECORD}\n` : `${RECORD.replace("0.5", "0.4")}\n`);
    await m.g.waitUntil((t) => /\nA 1 1\n/.test("\n" + t.slice(gMark)), 10_000);
    // M has read and receipted G's line; F's receipt still waits for G's.
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(
      !/\nA 1 1\n/.test("\n" + after(m.f, fMark)),
      `no receipt to F yet: ${after(m.f, fMark)}`,
    );
    await m.g.send("A 1 1\n");
    await m.f.waitUntil((t) => /\nA 1 1\n/.test("\n" + t.slice(fMark)), 10_000);
    assert.deepEqual(m.late, []);
  }
});

Deno.test("receipts on a link: the `S` for a record from the peer rides in the link's next write, never alone", async () => {
  await using m = await startM();
  // M owes F an `S 1` (its stream to F skips F's own record) and, once G receipts, `A 1 1`.
  const { fMark } = await floodFromF(m);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(
    m.f.received.slice(fMark).replaceAll("PING\n", ""),
    "",
    "no write for an S alone",
  );
  await m.g.send("A 1 1\n");
  await m.f.waitUntil((t) => t.slice(fMark).includes("A 1 1\n"), 10_000);
  assert.deepEqual(
    m.f.received.slice(fMark).replaceAll("PING\n", ""),
    "A 1 1\nS 1\n",
    "the S rode with the receipt",
  );
  assert.deepEqual(m.late, []);
});

Deno.test("a neighbour known to hold a record does not get it again; one that lost its store does", async () => {
  await using m = await startM();
  const auth = new HerdAuth(SECRET);
  const port = m.port;
  // G goes away; F hands M a record meanwhile.
  await m.g.close();
  await m.f.send(`${RECORD}\n`);
  await m.f.waitUntil((t) => t.includes("\nA 1 1\n"), 10_000);
  // G comes back holding that record (it reached G some other way): its catch-up stream to M
  // carries it, in the same read as its SYNC. M's own stream to G must skip it.
  const g = await dialAs("G", port, auth);
  try {
    await g.send(`SYNC eG 1 - 0\n${RECORD}\nCAUGHTUP 1\n`);
    await g.waitUntil((t) => /\nCAUGHTUP \d+\n/.test(t), 10_000);
    const stream = g.received.slice(g.received.indexOf("\nSYNC "));
    assert.ok(!stream.includes("kiwi"), `M sent G a record G holds: ${stream}`);
  } finally {
    await g.close();
  }
  // G comes back having lost its store (a new epoch): M resends everything, that record too.
  const g2 = await dialAs("G", port, auth);
  try {
    await g2.send("SYNC eG2 0 - 0\nCAUGHTUP 0\n");
    await g2.waitUntil((t) => /\nCAUGHTUP \d+\n/.test(t), 10_000);
    assert.match(g2.received, /\nR \d+ F \+0\.100000000 kiwi /, "the resend carries it");
  } finally {
    await g2.close();
  }
});

const PAPAYA = "R 2 F +0.100000000 papaya +34.068930-118.445127 1700000000.5";

Deno.test("catch-up from two neighbours: what one streams is not forwarded to the other before the other's stream ends", async () => {
  // M restarted empty; F and G both stream it their records (neither has sent CAUGHTUP yet).
  await using m = await startM(true, true);
  const gMark = m.g.received.length;
  await m.f.send(`${RECORD}\n${PAPAYA}\n`);
  await m.f.waitUntil((t) => /\nA 1 2\n/.test(t), 10_000);
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(!after(m.g, gMark).includes(" kiwi "), `held back from G: ${after(m.g, gMark)}`);
  // G's stream carries kiwi too, then ends: M sends G only what G did not send it.
  await m.g.send(`${RECORD}\nCAUGHTUP 1\n`);
  await m.g.waitUntil((t) => t.slice(gMark).includes(" papaya "), 10_000);
  assert.ok(!after(m.g, gMark).includes(" kiwi "), `G got a record it sent: ${after(m.g, gMark)}`);
  assert.ok(!after(m.f, 0).includes("R 1 F +0.100000000 kiwi"), "nor F");
});

Deno.test("catch-up from two neighbours: a client's record is not held back, nor what precedes it", async () => {
  await using m = await startM(true, true);
  const gMark = m.g.received.length;
  await m.f.send(`${PAPAYA}\n`);
  await m.f.waitUntil((t) => /\nA \d+ 2\n/.test(t), 10_000);
  const client = await TcpClient.connect(m.port);
  try {
    await client.send("IAMAT mango +34.068930-118.445127 1700000001.5\n");
    // Both reach G, in M's order, while G has not ended its stream.
    await m.g.waitUntil((t) => t.slice(gMark).includes(" mango "), 10_000);
    assert.match(after(m.g, gMark), /papaya[^]*mango/);
  } finally {
    await client.close();
  }
});

Deno.test("catch-up from two neighbours: a stream that breaks off holds nothing back any more", async () => {
  await using m = await startM(true, true);
  const gMark = m.g.received.length;
  await m.f.send(`${PAPAYA}\n`);
  await m.f.waitUntil((t) => /\nA \d+ 2\n/.test(t), 10_000);
  // F goes away before its CAUGHTUP: what it streamed goes on to G, which is still streaming.
  await m.f.close();
  await m.g.waitUntil((t) => t.slice(gMark).includes(" papaya "), 10_000);
});

Deno.test("catch-up from two neighbours: when one stream ends, what it streamed still waits for the other's stream to end", async () => {
  // F's stream ends first (the usual case: the two finish a moment apart). G is still streaming
  // and will send kiwi itself: forwarding kiwi to G at F's CAUGHTUP would send it back a record
  // it holds (in a 1M catch-up, every record F sent before G did).
  await using m = await startM(true, true);
  const gMark = m.g.received.length;
  await m.f.send(`${RECORD}\n${PAPAYA}\n`);
  await m.f.waitUntil((t) => /\nA 1 2\n/.test(t), 10_000);
  await m.f.send("CAUGHTUP 2\n");
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(!after(m.g, gMark).includes(" kiwi "), `held back from G: ${after(m.g, gMark)}`);
  await m.g.send(`${RECORD}\nCAUGHTUP 1\n`);
  await m.g.waitUntil((t) => t.slice(gMark).includes(" papaya "), 10_000);
  assert.ok(!after(m.g, gMark).includes(" kiwi "), `G got a record it sent: ${after(m.g, gMark)}`);
});

/**
 * M with F still streaming its catch-up, holding kiwi from G (live), and the events M emits
 * from before kiwi came.
 */
async function mHoldingKiwi() {
  const m = await startM(false, true);
  const events: HerdEvent[] = [];
  const off = m.herd.bus.subscribe((e) => events.push(e));
  const store = m.herd.servers.get("M")!.store;
  try {
    await m.g.send(`${RECORD}\n`);
    await waitFor(() => store.get("kiwi") !== undefined, 10_000, "kiwi stored");
  } catch (err) {
    off();
    await m[Symbol.asyncDispose]();
    throw err;
  }
  return {
    ...m,
    events,
    store,
    async [Symbol.asyncDispose]() {
      off();
      await m[Symbol.asyncDispose]();
    },
  };
}

Deno.test("catch-up: a stream's copies of records we hold are receipted and counted, with no event each", async () => {
  // G (live) gives M kiwi; F's catch-up stream then carries kiwi too, and papaya.
  await using m = await mHoldingKiwi();
  const { events, store } = m;
  const metrics = new HerdMetrics(m.herd);
  try {
    const fMark = m.f.received.length;
    await m.f.send(`${RECORD}\n${PAPAYA}\n`);
    await m.f.waitUntil((t) => /\nA 1 2\n/.test("\n" + t.slice(fMark)), 10_000);
    assert.deepEqual(events.filter((e) => e.kind === "location.dropped"), []);
    const read = events.filter((e) => e.kind === "propagation.received" && e.from === "F");
    assert.deepEqual(read.map((e) => e.kind === "propagation.received" && e.records.length), [2]);
    assert.deepEqual(read.map((e) => e.kind === "propagation.received" && e.duplicates), [1]);
    const x = parseExposition(await metrics.render());
    assert.equal(
      x.value("herd_updates_dropped_total", { server: "M", from: "F", reason: "duplicate" }),
      1,
    );
    assert.equal(x.value("herd_updates_received_total", { server: "M", peer: "F" }), 2);
    assert.equal(store.size, 2);
  } finally {
    metrics.close();
  }
});

Deno.test("catch-up: the records read with the CAUGHTUP, before it, are the stream's: counted in its SYNC, stored as catch-up ones", async () => {
  // A stream's last read carries its last records and its CAUGHTUP (a read of up to 64 KiB:
  // hundreds of them). They were stored after the CAUGHTUP's handling, as live records, and
  // left out of the SYNC line's count.
  await using m = await startM(false, true);
  const events: HerdEvent[] = [];
  const off = m.herd.bus.subscribe((e) => events.push(e));
  try {
    await m.f.send(`${fruitLines}CAUGHTUP ${FRUIT.length}\n`);
    await waitFor(() => events.some((e) => e.kind === "sync.done"), 10_000, "the SYNC");
    const done = events.find((e) => e.kind === "sync.done")!;
    assert.equal(done.kind === "sync.done" && done.received, FRUIT.length);
    const accepted = events.filter((e) => e.kind === "location.accepted");
    assert.deepEqual(
      accepted.map((e) => e.kind === "location.accepted" && e.catchUp),
      FRUIT.map(() => true),
    );
    // Stored before the catch-up's end was told.
    assert.ok(events.indexOf(accepted.at(-1)!) < events.indexOf(done));
    // A record after the CAUGHTUP is live.
    await m.f.send(`${formatRecord(FRUIT.length + 1, { ...fruitRecords[0], client: "lime" })}`);
    await waitFor(
      () => events.filter((e) => e.kind === "location.accepted").length > FRUIT.length,
      10_000,
      "lime",
    );
    const lime = events.filter((e) => e.kind === "location.accepted").at(-1)!;
    assert.equal(lime.kind === "location.accepted" && lime.catchUp, false);
  } finally {
    off();
  }
});

Deno.test("catch-up: a line one byte off the record we hold, in any field, is no duplicate; a held record in another spacing is one", async () => {
  // Records are read from the bytes of a link's reads and compared in place with the stored one
  // (peers.ts #onRecordBytes): every other form, and every difference, must be judged as before.
  await using m = await mHoldingKiwi();
  const { events, store } = m;
  const fields = RECORD.split(" ").slice(2); // origin diff client location time
  const variants = [
    fields, // the record M holds: a duplicate
    fields.map((f, i) => i === 0 ? "E" : f), // origin
    fields.map((f, i) => i === 1 ? "+0.100000001" : f), // diff
    fields.map((f, i) => i === 3 ? "+34.068930-118.445128" : f), // location
    fields.map((f, i) => i === 4 ? `${f}0` : f), // time: the same instant, other bytes
    fields.map((f, i) => i === 2 ? "kiwj" : f), // client: another one
  ];
  const lines = variants.map((v, i) => `R ${i + 1} ${v.join(" ")}`);
  // The held record again, but with a run of spaces and a tab: not the plain form.
  lines.push(`R 7 ${fields.join("  ")}`, `R 8\t${fields.join(" ")}`);
  // A plain line of an invalid record: skipped, quoted, receipted.
  const invalid = `R 9 F +0.100000000 kiwk +91.000000-118.445127 1700000000.5`;
  lines.push(invalid);
  const fMark = m.f.received.length;
  await m.f.send(lines.join("\n") + "\n");
  await m.f.waitUntil((t) => /\nA 1 9\n/.test("\n" + t.slice(fMark)), 10_000);
  const skipped = events.filter((e) => e.kind === "error" && e.reason === "record-invalid");
  assert.deepEqual(
    skipped.map((e) => e.kind === "error" && e.message),
    [`skipped from F: bad record ${JSON.stringify(invalid)}`],
  );
  assert.equal(store.get("kiwk"), undefined);
  const read = events.filter((e) => e.kind === "propagation.received" && e.from === "F");
  assert.equal(
    read.reduce((n, e) => n + (e.kind === "propagation.received" ? e.records.length : 0), 0),
    8,
  );
  assert.equal(
    read.reduce((n, e) => n + (e.kind === "propagation.received" ? e.duplicates ?? 0 : 0), 0),
    3,
  );
  // kiwi is whichever of its versions the record rules pick, as any server would.
  const kiwis = variants.filter((v) => v[2] === "kiwi").map((
    [origin, diff, client, location, time],
  ) => ({ origin, diff, client, location, time }));
  const best = kiwis.reduce((a, b) => compareRecords(a, b) >= 0 ? a : b);
  const { origin, diff, client, location, time } = recordFields(store.get("kiwi")!);
  assert.deepEqual({ origin, diff, client, location, time }, best);
  assert.equal(store.get("kiwj")?.time, fields[4]);
});

Deno.test("catch-up: a stream in the plain form and the same stream in another form leave the same records: newer wins, stale, duplicate and invalid ones skipped", async () => {
  // The one intake (peers.ts #onRecord) takes plain lines from the bytes (origins of recent lines
  // kept, not decoded) and other forms from their parsed text: both must follow the record rules.
  // Origins: more than a link keeps, some the prefix of another; clients, times and locations
  // repeat, so records replace, lose to and repeat each other.
  const origins = [
    "H",
    "Hi",
    "Hil",
    "Hill",
    "Hilly",
    "Jaquez",
    "Smith",
    "Singleton",
    "Q",
    "Campbell",
  ];
  const clients = ["apple", "banana", "cherry", "date"];
  let seed = 7;
  const next = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2147483648) >>> 16) % n;
  const records: AtFields[] = [];
  for (let i = 0; i < 120; i++) {
    const repeat = records.length > 0 && next(5) === 0;
    records.push(
      repeat ? records[next(records.length)] : {
        origin: origins[next(origins.length)],
        diff: `+0.${String(1000000000 + next(3)).slice(1)}`,
        client: clients[next(clients.length)],
        location: ["+34.068930-118.445127", "+34.068931-118.445127"][next(2)],
        time: ["1700000000.5", "1700000000.50", "1700000001", "1699999999.9"][next(4)],
      },
    );
  }
  // Invalid records among them: skipped, and quoted.
  const invalid = [
    { ...records[3], location: "+91.000000-118.445127" },
    { ...records[4], diff: "+0.1" },
  ];
  records.splice(40, 0, invalid[0]);
  records.splice(80, 0, invalid[1]);
  // What the rules give, record by record: the newest per client, and how many were new.
  const expected = new Map<string, AtFields>();
  let stored = 0;
  for (const r of records) {
    if (invalid.includes(r)) continue;
    const held = expected.get(r.client);
    if (held === undefined || compareRecords(r, held) > 0) {
      expected.set(r.client, r);
      stored++;
    }
  }
  const lines = records.map((r, i) => formatRecord(i + 1, r));
  for (const form of ["plain", "other"]) {
    await using m = await startM(false, true);
    const events: HerdEvent[] = [];
    const off = m.herd.bus.subscribe((e) => events.push(e));
    try {
      const store = m.herd.servers.get("M")!.store;
      // Another form: a run of spaces after `R` (parsed from the line's text).
      const text = form === "plain"
        ? lines.join("")
        : lines.map((l) => l.replace("R ", "R  ")).join("");
      const fMark = m.f.received.length;
      // In pieces, so the records come in more than one read.
      for (let at = 0; at < text.length; at += 1500) await m.f.send(text.slice(at, at + 1500));
      await m.f.waitUntil(
        (t) =>
          t.slice(fMark).includes(` ${records.length}\n`) && /\nA 1 /.test("\n" + t.slice(fMark)),
        10_000,
      );
      await waitFor(() => store.headSeq >= stored, 10_000, "records stored");
      const held = new Map(clients.flatMap((c) => {
        const r = store.get(c);
        if (r === undefined) return [];
        const { origin, diff, client, location, time } = recordFields(r);
        return [[c, { origin, diff, client, location, time }]];
      }));
      assert.deepEqual(held, expected, form);
      assert.equal(store.headSeq, stored, form);
      const skipped = events.filter((e) => e.kind === "error" && e.reason === "record-invalid");
      assert.deepEqual(
        skipped.map((e) => e.kind === "error" && e.message),
        invalid.map((r) => {
          const line = lines[records.indexOf(r)].slice(0, -1);
          return `skipped from F: bad record ${
            JSON.stringify(form === "plain" ? line : line.replace("R ", "R  "))
          }`;
        }),
        form,
      );
    } finally {
      off();
    }
  }
});

/**
 * M (empty, or holding `records` from a client) with F and G played by the test, each dialling
 * M and sending `syncs[name]` as its first lines (nothing more: no CAUGHTUP).
 */
async function startMWith(syncs: Record<"F" | "G", string>, records: string[] = []) {
  const { herd, m } = herdM(60_000, { holdMinRecords: 10 });
  await herd.start();
  const peers: TcpClient[] = [];
  const beat = setInterval(() => peers.forEach((p) => p.send("PING\n").catch(() => {})), 500);
  const dispose = async () => {
    clearInterval(beat);
    for (const p of peers) await p.close();
    await herd.stop();
  };
  try {
    if (records.length > 0) {
      const c = await TcpClient.connect(m);
      await c.send(records.map((r) => `IAMAT ${r}\n`).join(""));
      await c.waitUntil((t) => t.split("\n").length > records.length, 5000);
      await c.close();
    }
    const auth = new HerdAuth(SECRET);
    for (const name of ["F", "G"] as const) {
      const c = await dialAs(name, m, auth);
      peers.push(c);
      await c.send(syncs[name]);
      // M has read it (and answered what it answers) once its next line comes back.
      await c.send("PING\n");
    }
    const mServer = herd.servers.get("M")!;
    await waitFor(() => mServer.links.every((l) => l.up), 5000, "both links up");
  } catch (err) {
    await dispose();
    throw err;
  }
  const server = herd.servers.get("M")!;
  return { f: peers[0], g: peers[1], server, store: server.store, [Symbol.asyncDispose]: dispose };
}

/** The `DIGEST` lines in `text`, read into one digest (undefined until all came). */
function digestIn(text: string): BucketDigest | undefined {
  const reader = new DigestReader();
  for (const line of text.split("\n")) {
    const m = parseLinkLine(line);
    if (m?.type === "DIGEST") assert.ok(reader.add(m), "DIGEST parts in order");
  }
  return reader.take();
}

/** A digest of `records` (IAMAT fields: client location time, origin M's as a client's). */
function digestOf(records: AtFields[], buckets: number, salt: number): BucketDigest {
  const d = new BucketDigest(buckets, salt);
  for (const r of records) d.add(r);
  return d;
}

const FRUIT = ["apple", "banana", "cherry", "date", "elder", "fig", "grape", "kiwi"];
/** `R` lines of a catch-up stream from F, one per fruit (seq from 1), and their AT fields. */
const fruitRecords = FRUIT.map((c, i) => ({
  origin: "F",
  diff: "+0.100000000",
  client: c,
  location: "+34.068930-118.445127",
  time: `1700000000.${i + 1}`,
}));
const fruitLines = fruitRecords.map((r, i) => formatRecord(i + 1, r)).join("");

Deno.test("HOLD: M announces HOLD/DIGEST, asks a second neighbour that announced it to hold while the first streams (the first: GO), and never an older one", async () => {
  for (const gAnnounces of [true, false]) {
    // F: a catch-up of 1,000 records to come. G: the same; its empty lines say what it knows.
    const gSync = `SYNC eG 1000 - 0\n\n${gAnnounces ? "\n" : ""}`;
    await using m = await startMWith({ F: "SYNC eF 1000 - 0\n\n\n", G: gSync });
    assert.match(m.g.received, /\nSYNC [^\n]*\n\n\n/, "M's SYNC is followed by two empty lines");
    await m.g.waitUntil((t) => t.includes("PONG\n"), 5000);
    assert.equal(/\nHOLD\n/.test(m.g.received), gAnnounces, m.g.received);
    assert.ok(!/\nGO\n/.test(m.g.received), m.g.received);
    assert.ok(/\nGO\n/.test(m.f.received) && !m.f.received.includes("HOLD"), "the first runs");
  }
});

Deno.test("DIGEST: once the first stream ends the held neighbour gets M's digest, and at its CAUGHTUP only what differs from its own digest", async () => {
  await using m = await startMWith({ F: "SYNC eF 1000 - 0\n\n\n", G: "SYNC eG 1000 - 0\n\n\n" });
  await m.g.waitUntil((t) => /\nHOLD\n/.test(t), 5000);
  // F's stream: every fruit, and its end in the same read (they are stored as the stream's
  // records before the CAUGHTUP; none goes to G, which was asked to HOLD). M's digest goes to G.
  await m.f.send(`${fruitLines}CAUGHTUP ${FRUIT.length}\n`);
  await m.g.waitUntil((t) => digestIn(t) !== undefined, 10_000);
  const mine = digestIn(m.g.received)!;
  assert.deepEqual(mine.sums, digestOf(fruitRecords, mine.buckets, mine.salt).sums);
  // G holds every fruit but a newer kiwi, and a lime M lacks: its digest, its stream, its end.
  const kiwi = { ...fruitRecords[7], time: "1700000001.5" };
  const lime = { ...fruitRecords[0], client: "lime" };
  const gHolds = [...fruitRecords.slice(0, 7), kiwi, lime];
  await m.g.send(formatDigest(digestOf(gHolds, mine.buckets, mine.salt)));
  await m.g.send(`${formatRecord(1, kiwi)}${formatRecord(2, lime)}`);
  await m.g.waitUntil((t) => /\nA 1 2\n/.test(t), 10_000);
  const gMark = m.g.received.length;
  await m.g.send("CAUGHTUP 2\n");
  const toG = m.server.links.find((l) => l.peer === "G")!;
  await waitFor(() => toG.stats().behind === 0, 10_000, "M's stream to G past every record");
  // What M sends G: its fruits in the buckets where the digests differ (kiwi's and lime's).
  const differ = new Set(["kiwi", "lime"].map((c) => bucketOf(c, mine.buckets, mine.salt)));
  const expected = FRUIT.filter((c) =>
    c !== "kiwi" && differ.has(bucketOf(c, mine.buckets, mine.salt))
  );
  // Everything M ever sent G (M was empty when G linked).
  const sent = [...m.g.received.matchAll(/(?:^|\n)R \d+ \S+ \S+ (\S+) /g)].map((x) => x[1]);
  assert.deepEqual(sent.sort(), expected.sort(), after(m.g, gMark));
});

Deno.test("HOLD: M holds its catch-up stream to a neighbour that asks, until its DIGEST; then sends what the digest lacks, and CAUGHTUP", async () => {
  const loc = "+34.068930-118.445127";
  const iamats = FRUIT.map((c, i) => `${c} ${loc} 1700000000.${i + 1}`);
  // F asks M to hold before M's stream to it starts: the lines come in M's first read.
  await using m = await startMWith(
    { F: "SYNC eF 0 - 0\n\n\nHOLD\n", G: "SYNC eG 0 - 0\n\n\nCAUGHTUP 0\n" },
    iamats,
  );
  await m.f.waitUntil((t) => t.includes("PONG\n"), 5000);
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(!/\nR /.test(m.f.received), `M streamed while held: ${m.f.received}`);
  assert.ok(!m.f.received.includes("CAUGHTUP"), "nor ended its stream");
  // F's digest: it holds the first four fruits as M does (M's records, origin M).
  const held = [...m.store.values()].filter((r) => FRUIT.indexOf(r.client) < 4);
  assert.equal(held.length, 4);
  const theirs = digestOf(held.map((r) => recordFields(r)), 64, 0x5eed);
  await m.f.send(formatDigest(theirs));
  await m.f.waitUntil((t) => t.includes("\nCAUGHTUP "), 10_000);
  const answer = digestIn(m.f.received)!;
  assert.equal(answer.salt, 0x5eed);
  assert.equal(answer.buckets, 64);
  const matched = new Set(
    FRUIT.map((c) => bucketOf(c, 64, 0x5eed)).filter((b) =>
      answer.sums[2 * b] === theirs.sums[2 * b] && answer.sums[2 * b + 1] === theirs.sums[2 * b + 1]
    ),
  );
  const expected = FRUIT.filter((c) => !matched.has(bucketOf(c, 64, 0x5eed)));
  assert.ok(expected.length >= 4, "the four F lacks are in buckets that differ");
  const sent = [...m.f.received.matchAll(/(?:^|\n)R \d+ \S+ \S+ (\S+) /g)].map((x) => x[1]);
  assert.deepEqual(sent.sort(), expected.sort());
});

Deno.test("GO: M's big catch-up stream to a neighbour that announced HOLD waits for its answer; to an older one it goes at once", async () => {
  const loc = "+34.068930-118.445127";
  const iamats = Array.from({ length: 12 }, (_, i) => `c${i} ${loc} 1700000000.${i + 1}`);
  // F announces and has not answered; G is older (one empty line): M streams it at once.
  await using m = await startMWith(
    { F: "SYNC eF 0 - 0\n\n\n", G: "SYNC eG 0 - 0\n\nCAUGHTUP 0\n" },
    iamats,
  );
  await m.g.waitUntil((t) => t.includes("\nCAUGHTUP 12\n"), 10_000);
  await m.f.waitUntil((t) => t.includes("PONG\n"), 5000);
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(!/\nR /.test(m.f.received), `M streamed before F's answer: ${m.f.received}`);
  await m.f.send("GO\n");
  await m.f.waitUntil((t) => t.includes("\nCAUGHTUP 12\n"), 10_000);
});

Deno.test("DIGEST: a part out of order drops the link (peer sent garbage), like any line that is no message", async () => {
  await using m = await startMWith({ F: "SYNC eF 0 - 0\n\n\n", G: "SYNC eG 0 - 0\n\n\n" });
  const rejected: string[] = [];
  const off = m.server.bus.subscribe((e) => e.kind === "peer.rejected" && rejected.push(e.reason));
  try {
    await m.f.send(`DIGEST 0000000a 4096 1024 ${"0".repeat(16 * 1024)}\n`);
    const toF = m.server.links.find((l) => l.peer === "F")!;
    await waitFor(() => !toF.up, 5000, "F's link dropped");
    assert.deepEqual(rejected, ["out-of-order DIGEST 1024/4096"]);
    assert.ok(m.server.links.find((l) => l.peer === "G")!.up, "G's link stays");
  } finally {
    off();
  }
});
