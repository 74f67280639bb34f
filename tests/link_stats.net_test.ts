/**
 * Link statistics over real links on loopback: each link's state, PING round trip, records behind
 * and last change, as `linkStats()`, in the snapshot and as `link.stats` events; and the PONG
 * rule that keeps older peers linked (they never get a line they do not know).
 *
 * @module
 */

import assert from "node:assert/strict";
import { HerdAuth } from "../servers/auth.ts";
import { parseConfig } from "../servers/config.ts";
import type { HerdEvent, LinkStatsEvent } from "../servers/events.ts";
import { newNonce } from "../servers/handshake.ts";
import { proofText } from "../servers/wire.ts";
import { Herd } from "../servers/herd.ts";
import { RttProbe } from "../servers/link_stats.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";
import { exchange, freePorts, startSeedHerd, TcpClient, waitFor } from "./_helpers/net.ts";

const SECRET = "link-stats-test-secret-0123456789";

Deno.test("link stats: a PONG answers the oldest PING still out", () => {
  const rtt = new RttProbe();
  assert.equal(rtt.answered(5), undefined, "a PONG without a PING measures nothing");
  rtt.sent(100);
  rtt.sent(200);
  assert.equal(rtt.answered(103), 3);
  assert.equal(rtt.answered(260), 60);
  assert.equal(rtt.lastMs, 60);
  for (let i = 0; i < 20; i++) rtt.sent(i);
  assert.equal(rtt.outstanding, 8, "unanswered PINGs are bounded");
  rtt.reset();
  assert.equal(rtt.outstanding, 0);
});

Deno.test("link stats: round trips, records behind while a neighbour is down, and events", async () => {
  const t = await startSeedHerd({ whatsatGraceMs: 0 });
  const events: LinkStatsEvent[] = [];
  const off = t.herd.bus.subscribe((e: HerdEvent) => {
    if (e.kind === "link.stats") events.push(e);
  });
  try {
    const hill = t.herd.servers.get("Hill")!;
    // Every link of every server measures its round trip within a few heartbeats.
    await waitFor(
      () =>
        [...t.herd.servers.values()].every((s) =>
          s.linkStats().every((l) => l.state === "up" && l.rttMs !== null)
        ),
      15_000,
      "every link up with a round trip",
    );
    for (const s of t.herd.snapshot().servers) {
      for (const l of s.links) {
        assert.equal(l.state, "up", `${s.name}-${l.peer}`);
        assert.ok(typeof l.rttMs === "number" && l.rttMs >= 0 && l.rttMs < 5000, `rtt ${l.rttMs}`);
        assert.equal(l.behind, 0);
      }
    }
    // A round trip is reported when it changes (to 0.1 ms). In memory (the links of one
    // process) it stays at 0.0 ms, and its first report may have come before we subscribed: a
    // delay on the link changes it, and the report says by how much.
    t.herd.setLink("Hill", "Jaquez", { delayMs: 40 });
    await waitFor(
      () =>
        events.some((e) =>
          e.server === "Hill" && e.peer === "Jaquez" && e.rttMs !== null && e.rttMs >= 40
        ),
      5000,
      "the round trip reported on the bus",
    );
    t.herd.setLink("Hill", "Jaquez", { delayMs: 0 });

    // Jaquez goes away: Hill's link to it goes down, and records stored meanwhile are behind.
    // In memory Hill's end drops as Jaquez closes it, before the stop has finished.
    const downAt = Date.now();
    await t.herd.stopServer("Jaquez");
    await waitFor(
      () => hill.linkStats().find((l) => l.peer === "Jaquez")!.state === "down",
      5000,
      "Hill-Jaquez down",
    );
    for (let i = 0; i < 3; i++) {
      assert.match(
        await exchange(t.port("Hill"), `IAMAT stats${i} +1+2 ${1700000000 + i}\n`),
        /^AT /,
      );
    }
    const down = hill.linkStats().find((l) => l.peer === "Jaquez")!;
    assert.equal(down.behind, 3, "three records not sent to Jaquez");
    assert.equal(down.rttMs, null);
    assert.ok(down.since >= downAt - 50, "the last change is the drop");
    assert.equal(hill.linkStats().find((l) => l.peer === "Smith")!.behind, 0);
    await waitFor(
      () =>
        events.some((e) =>
          e.server === "Hill" && e.peer === "Jaquez" && e.state === "down" && e.behind === 3
        ),
      5000,
      "a link.stats event for the down link with 3 behind",
    );

    // Back: it catches up, nothing is behind, and the state says when it came back.
    await t.herd.startServer("Jaquez");
    await waitFor(
      () => {
        const l = hill.linkStats().find((l) => l.peer === "Jaquez")!;
        return l.state === "up" && l.behind === 0;
      },
      10_000,
      "Hill-Jaquez up and caught up",
    );
    assert.ok(hill.linkStats().find((l) => l.peer === "Jaquez")!.since > down.since);

    // At most one event per link per heartbeat (plus the one at stop/start).
    const counted = events.length;
    const from = performance.now();
    await new Promise((r) => setTimeout(r, 3000));
    const seconds = (performance.now() - from) / 1000;
    const perLink = new Map<string, number>();
    for (const e of events.slice(counted)) {
      const k = `${e.server}-${e.peer}`;
      perLink.set(k, (perLink.get(k) ?? 0) + 1);
    }
    for (const [k, n] of perLink) assert.ok(n <= Math.ceil(seconds) + 1, `${k}: ${n} events`);
  } finally {
    off();
    await t.close();
  }
});

/** M alone, with neighbour F played by the test. */
async function startM(): Promise<{ herd: Herd; port: number; close(): Promise<void> }> {
  const [m, f] = freePorts(2);
  const config = parseConfig({
    servers: { F: { port: f, neighbors: ["M"] }, M: { port: m } },
  });
  const herd = new Herd(config, {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: SECRET,
    only: ["M"],
  });
  await herd.start();
  return { herd, port: m, close: () => herd.stop() };
}

/** Links to M as F (a whole handshake); resolves once M's SYNC line came. */
async function linkAsF(port: number): Promise<TcpClient> {
  const auth = new HerdAuth(SECRET);
  const c = await TcpClient.connect(port);
  const nonceD = newNonce();
  await c.send(`HERD2 HELLO peer F M ${nonceD}\n`);
  const text = await c.waitUntil((t) => t.includes("\n"), 5000);
  const nonceA = text.split("\n")[0].split(" ")[4];
  await c.send(
    `HERD2 PROOF ${await auth.sign(proofText("peer", "dialler", "F", "M", nonceD, nonceA))}\n`,
  );
  await c.waitUntil((t) => /\nSYNC [^\n]*\n/.test(t), 5000);
  return c;
}

Deno.test("link stats: PONG only to a peer that announced it; an older peer sees no new line", async () => {
  const m = await startM();
  const link = () => m.herd.servers.get("M")!.links[0];
  try {
    // An older peer: its SYNC, no empty line, then PINGs. M must answer nothing new.
    const old = await linkAsF(m.port);
    assert.match(old.received, /\nSYNC \S+ 0 - 0\n\n/, "M announces PONGs with an empty line");
    await old.send("SYNC f0f0f0f0 0 - 0\nPING\n");
    // Wait for M's own heartbeat, so its answer to our PING (if any) had time to come first.
    await old.waitUntil((t) => /\nPING\n/.test(t.slice(t.indexOf("SYNC"))), 5000);
    await old.send("PING\n");
    await new Promise((r) => setTimeout(r, 300));
    const after = old.received.slice(old.received.indexOf("\nSYNC ") + 1);
    const lines = after.split("\n").slice(0, -1);
    assert.ok(
      lines.every((l) => /^(SYNC .*|CAUGHTUP \d+|PING|)$/.test(l)),
      `only lines an older server knows: ${JSON.stringify(lines)}`,
    );
    assert.ok(!after.includes("PONG"));
    assert.equal(link().up, true);
    assert.equal(link().stats().rttMs, null, "no round trip with a peer that never answers");
    await old.close();
    await waitFor(() => !link().up, 5000, "old link down");

    // A current peer: the empty line after SYNC. Our PING gets a PONG, and M's PINGs, answered,
    // give M a round trip.
    const cur = await linkAsF(m.port);
    await cur.send("SYNC f1f1f1f1 0 - 0\n\nCAUGHTUP 0\nPING\n");
    await cur.waitUntil((t) => t.includes("\nPONG\n"), 5000);
    const seen = cur.received.length;
    await cur.waitUntil((t) => t.slice(seen).includes("PING\n"), 5000);
    await cur.send("PONG\n");
    await waitFor(() => link().stats().rttMs !== null, 5000, "M measured a round trip");
    const stats = link().stats();
    assert.equal(stats.state, "up");
    assert.ok(stats.rttMs! >= 0 && stats.rttMs! < 5000);
    await cur.close();
  } finally {
    await m.close();
  }
});
