/**
 * An authenticated peer that lies (it holds the herd secret, so it passes the handshake): what it
 * says may cost its own link, never the herd's other links or the server's thread. Found by an
 * adversarial review (adv16). Garbage lines and invalid records are in tests/peer_auth.net_test.ts.
 */

import assert from "node:assert/strict";
import { HerdAuth } from "../servers/auth.ts";
import { parseConfig } from "../servers/config.ts";
import type { HerdEvent } from "../servers/events.ts";
import { newNonce } from "../servers/handshake.ts";
import { proofText } from "../servers/wire.ts";
import { Herd } from "../servers/herd.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";
import { exchange, freePorts, TcpClient, waitFor } from "./_helpers/net.ts";

const SECRET = "peer-hostile-test-secret-0123456789";

/** M and N (linked, in this process) and F, a neighbour of M that the test plays. */
async function startMN(): Promise<{
  herd: Herd;
  m: number;
  events: HerdEvent[];
  [Symbol.asyncDispose](): Promise<void>;
}> {
  const [m, n, f] = freePorts(3);
  const config = parseConfig({
    servers: { M: { port: m, neighbors: ["N", "F"] }, N: { port: n }, F: { port: f } },
  });
  const herd = new Herd(config, {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: SECRET,
    only: ["M", "N"],
    whatsatGraceMs: 0,
  });
  const events: HerdEvent[] = [];
  herd.bus.subscribe((e) => void events.push(e));
  await herd.start();
  return { herd, m, events, [Symbol.asyncDispose]: () => herd.stop() };
}

/** Links to M as F with the herd's secret; returns the connection and M's SYNC fields. */
async function connectAsF(m: number): Promise<{ c: TcpClient; sync: string[] }> {
  const auth = new HerdAuth(SECRET);
  const c = await TcpClient.connect(m);
  const nonceD = newNonce();
  await c.send(`HERD2 HELLO peer F M ${nonceD}\n`);
  const first = await c.waitUntil((t) => t.includes("\n"), 3000);
  const nonceA = first.slice(0, first.indexOf("\n")).split(" ")[4];
  await c.send(
    `HERD2 PROOF ${await auth.sign(proofText("peer", "dialler", "F", "M", nonceD, nonceA))}\n`,
  );
  const text = await c.waitUntil((t) => /\nSYNC [^\n]*\n/.test(t), 3000);
  return { c, sync: /\nSYNC ([^\n]*)\n/.exec(text)![1].split(" ") };
}

Deno.test("hostile peer: a SYNC claiming records of M's epoch it was never sent renews the epoch at most once, not at every connection", async () => {
  // Before: each such SYNC line (one handshake and 40 bytes) gave M a fresh epoch and brought
  // every link of M down and up, each neighbour resending its whole store both ways: 5 lines,
  // 5 renewals and 5 full resyncs of M-N.
  await using s = await startMN();
  const { c: filler } = await connectAsF(s.m);
  let batch = "SYNC fe 0 - 0\n";
  for (let i = 1; i <= 500; i++) batch += `R ${i} F +0.100000000 h${i} +10+20 1700000000\n`;
  await filler.send(batch);
  const n = s.herd.servers.get("N")!;
  await waitFor(() => n.store.size === 500, 10_000, "N holds F's records");
  await filler.close();
  const renewals = () =>
    s.events.filter((e) => e.kind === "error" && e.reason === "unclean-stop").length;
  const mnDowns = () =>
    s.events.filter((e) => e.kind === "link.down" && e.server === "N" && e.peer === "M").length;
  for (let k = 0; k < 5; k++) {
    const { c, sync } = await connectAsF(s.m);
    await c.send(`SYNC fe${k} 0 ${sync[0]} 999999999\n`);
    // M answers the next PING of ours only once it read the SYNC (lines are read in order).
    await c.send("\nPING\n");
    await c.waitUntil((t) => t.includes("\nPONG\n") || /link down|epoch/.test(t), 5000)
      .catch(() => {});
    await c.close();
  }
  await waitFor(
    () => s.herd.servers.get("M")!.links.every((l) => l.peer === "F" || l.up),
    5000,
    "M-N up",
  );
  assert.equal(renewals(), 1, "one renewal, not one per lying SYNC");
  assert.ok(mnDowns() <= 1, `M-N went down ${mnDowns()} times`);
  const ignored = s.events.filter((e) =>
    e.kind === "error" && /claims records numbered up to 999999999/.test(e.message)
  );
  assert.equal(ignored.length, 4, "each later claim is reported");
  assert.match(await exchange(s.m, "WHATSAT h1 10 0\n"), /^AT F \+0\.100000000 h1 /);
});

Deno.test("hostile peer: a DIGEST M does not owe an answer to drops the link, unanswered; after a HOLD, one is answered", async () => {
  // Before: every whole DIGEST (one line of 37 bytes, buckets 1) was answered with M's own,
  // each a pass over M's store: 50 lines held M's thread 1.3 s at 200,000 records (adv16).
  await using s = await startMN();
  const digest = (salt: number) =>
    `DIGEST ${salt.toString(16).padStart(8, "0")} 1 0 ${"0".repeat(16)}\n`;
  const rejected = () =>
    s.events.filter((e) => e.kind === "peer.rejected" && /out-of-order DIGEST/.test(e.reason))
      .length;
  // Unasked (no HOLD from us): dropped at the first, none answered.
  {
    const { c } = await connectAsF(s.m);
    await c.send(`SYNC fe 0 - 0\n\n\n${digest(1)}${digest(2)}${digest(3)}`);
    const text = await c.waitEof(5000);
    assert.doesNotMatch(text, /\nDIGEST /, "no digest of M's for an unasked one");
    assert.equal(rejected(), 1);
  }
  // After our HOLD: the first is answered with M's own (same salt), a second drops the link.
  {
    const { c } = await connectAsF(s.m);
    await c.send(`SYNC fe2 0 - 0\n\n\nHOLD\n${digest(7)}`);
    await c.waitUntil((t) => /\nDIGEST 00000007 1 0 [0-9a-f]{16}\n/.test(t), 5000);
    await c.send(digest(8));
    const text = await c.waitEof(5000);
    assert.doesNotMatch(text, /\nDIGEST 00000008 /, "the second is not answered");
    assert.equal(rejected(), 2);
  }
  // M serves on, and links again.
  const { c } = await connectAsF(s.m);
  await c.close();
});

Deno.test("hostile peer: a sequence number past 2^53 in S, A or SYNC is no message: the link drops, and M's next SYNC stays well formed", async () => {
  // Before: `S 10^23` set M's mark for F to 1e23, and M's next SYNC to F read `... fe 1e+23`,
  // which a real F takes for garbage: it dropped the link at every redial (adv16).
  await using s = await startMN();
  const huge = "99999999999999999999999";
  for (const line of [`S ${huge}`, `A 1 ${huge}`, `SYNC fe ${huge} - 0`, `SYNC fe 0 - ${huge}`]) {
    const { c } = await connectAsF(s.m);
    const sync = line.startsWith("SYNC")
      ? ""
      : "SYNC fe 1 - 0\nR 1 F +0.100000000 q1 +1+1 1700000000\n";
    await c.send(`${sync}${line}\n`);
    await c.waitEof(5000);
    const rejected = s.events.findLast((e) => e.kind === "peer.rejected");
    assert.ok(rejected?.kind === "peer.rejected", line);
    assert.equal(rejected.reason, `unexpected ${JSON.stringify(line)}`, line);
  }
  const { c, sync } = await connectAsF(s.m);
  assert.match(sync.join(" "), /^[0-9a-f]+ \d+ fe 1$/, "M's mark for F is the last real one");
  await c.close();
});

Deno.test("hostile peer: a second CAUGHTUP drops the link; invalid records are reported 100 at once, then one a second with a count", async () => {
  // Before: each CAUGHTUP line (11 bytes) was a sync.done event and a 59-byte log line, and each
  // invalid record an ERROR line, for as long as the peer went on (adv16).
  await using s = await startMN();
  const count = (pred: (e: HerdEvent) => boolean) => s.events.filter(pred).length;
  {
    const { c } = await connectAsF(s.m);
    await c.send(`SYNC fe 0 - 0\n${"CAUGHTUP 0\n".repeat(1000)}`);
    await c.waitEof(5000);
    assert.equal(count((e) => e.kind === "sync.done" && e.peer === "F"), 1);
    assert.equal(
      count((e) => e.kind === "peer.rejected" && e.reason === "a second CAUGHTUP"),
      1,
    );
  }
  const skipped = () =>
    s.events.filter((e) => e.kind === "error" && e.reason === "record-invalid")
      .map((e) => e.kind === "error" ? e.message : "");
  const { c } = await connectAsF(s.m);
  let text = "SYNC fe2 0 - 0\n";
  for (let i = 1; i <= 1000; i++) text += `R ${i} F +0.1 bad${i} +99+1 1\n`;
  await c.send(`${text}R 1001 F +0.100000000 good1 +1+1 1700000000\n`);
  const m = s.herd.servers.get("M")!;
  await waitFor(() => m.store.get("good1") !== undefined, 10_000, "the good record after them");
  const burst = skipped().length;
  assert.ok(burst >= 100 && burst < 200, `${burst} reports`);
  // A second later (at least), the next one is reported with the count of those left out.
  await new Promise((r) => setTimeout(r, 1100));
  await c.send("R 1002 F +0.1 late +99+1 1\n");
  await waitFor(() => skipped().length > burst, 5000, "the next report");
  assert.match(skipped().at(-1)!, /bad record "R 1002 F .*\(and \d+ more before it, not reported/);
  assert.ok(m.links.find((l) => l.peer === "F")!.up, "the link stays up");
  await c.close();
});
