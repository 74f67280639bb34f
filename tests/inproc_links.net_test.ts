/**
 * Links between the servers of one process, in memory (the default) and over loopback TCP
 * (`tcpLinks`, `start --tcp-links`), with the same assertions for both: which transport carries
 * the links (no link socket in memory; one per link over TCP), records flood to every server
 * byte for byte, a stopped server's neighbours see its links go down and stay down while it is
 * stopped (their dials fail), it relinks when it starts again and catches up what it missed,
 * and a cut and a delay act on an in-memory link as on a socket.
 */

import assert from "node:assert/strict";
import {
  exchange,
  freePorts,
  startSeedHerd,
  TcpClient,
  tcpSockets,
  type TestHerd,
  waitFor,
} from "./_helpers/net.ts";
import { parseConfig, seedConfigJson } from "../servers/config.ts";
import type { HerdEvent } from "../servers/events.ts";

const MODES = [
  { name: "in memory", tcpLinks: false },
  { name: "loopback TCP", tcpLinks: true },
] as const;

/** The seed herd with fixed link ports, so that the sockets on them can be counted. */
async function herdWithLinkPorts(tcpLinks: boolean): Promise<{ t: TestHerd; linkPorts: number[] }> {
  const ports = freePorts(10);
  const json = seedConfigJson(ports.slice(0, 5));
  const linkPorts = ports.slice(5);
  Object.values(json.servers).forEach((s, i) => Object.assign(s, { linkPort: linkPorts[i] }));
  const t = await startSeedHerd({ tcpLinks }, parseConfig(json));
  return { t, linkPorts };
}

/** ESTABLISHED sockets whose local port is a link port: the accepted end of a TCP link. */
function linkSockets(linkPorts: number[]): number {
  let n = 0;
  for (const [key, s] of tcpSockets()) {
    if (s.state === "01" && linkPorts.includes(Number(key.split(">")[0]))) n++;
  }
  return n;
}

/** Whether `server`'s link to `peer` is up. */
function up(t: TestHerd, server: string, peer: string): boolean {
  return t.herd.servers.get(server)!.links.find((l) => l.peer === peer)!.up;
}

/** Every running server holds `client`'s record exactly as `origin` stored it. */
function everywhere(t: TestHerd, client: string): boolean {
  const held = [...t.herd.servers.values()].filter((s) => s.running).map((s) =>
    s.store.get(client)
  );
  const first = held[0];
  return first !== undefined &&
    held.every((r) =>
      r !== undefined && r.origin === first.origin && r.diff === first.diff &&
      r.location === first.location && r.time === first.time
    );
}

for (const mode of MODES) {
  Deno.test(`in-process links, ${mode.name}: the transport, and records flood byte for byte`, async () => {
    const { t, linkPorts } = await herdWithLinkPorts(mode.tcpLinks);
    try {
      // Six links: over TCP each has one accepted socket on a link port; in memory none does.
      const want = mode.tcpLinks ? 6 : 0;
      await waitFor(() => linkSockets(linkPorts) === want, 10_000, `${want} link sockets`);
      const lines = Array.from(
        { length: 200 },
        (_, i) => `IAMAT flood-${i} +34.068930-118.445127 ${1_700_000_000 + i}.5\n`,
      );
      const replies = await exchange(t.port("Campbell"), lines.join(""), 10_000);
      assert.equal(replies.split("\n").filter((l) => l.startsWith("AT Campbell ")).length, 200);
      await waitFor(
        () => lines.every((_, i) => everywhere(t, `flood-${i}`)),
        10_000,
        "every record at every server",
      );
      // Hill is two hops from Campbell: its copy is the origin's, byte for byte.
      const hill = t.herd.servers.get("Hill")!.store.get("flood-7")!;
      assert.equal(hill.origin, "Campbell");
      assert.equal(hill.time, "1700000007.5");
      assert.equal(hill.location, "+34.068930-118.445127");
      assert.equal(linkSockets(linkPorts), want, "no link changed transport meanwhile");
    } finally {
      await t.close();
    }
  });

  Deno.test(`in-process links, ${mode.name}: every server holds a record when its AT reply is read, and in memory a neighbour that holds it is not sent it`, async () => {
    // The reply's wait for receipts is bounded (--receipt-wait-ms, 50 ms by default): a box that
    // keeps a server off the CPU longer (the full suite at load 11-15) lets the reply go first
    // by design (`receipt.late`), and the late link is then not waited for until it receipts
    // again. Read-your-writes is asserted where receipts come: 2 s of room. The full flood, as
    // before the trees (tests/flood_tree.net_test.ts counts those).
    await using t = await startSeedHerd({
      tcpLinks: mode.tcpLinks,
      receiptWaitMs: 2000,
      floodTrees: false,
    });
    let copies = 0;
    let linesSent = 0;
    const off = t.herd.bus.subscribe((e) => {
      if (e.kind === "location.dropped" && e.from !== null) copies++;
      if (e.kind === "propagation.sent") linesSent += e.records.length;
    });
    const c = await TcpClient.connect(t.port("Hill"));
    try {
      const n = 200;
      for (let i = 0; i < n; i++) {
        await c.send(`IAMAT held-${i} +34.068930-118.445127 ${1_700_000_000 + i}.5\n`);
        await c.replies(i + 1, 10_000);
        // Read-your-writes: the reply waited for the whole herd (receipts, or knowing a
        // neighbour of this process holds it), so every store has it now.
        const missing = [...t.herd.servers.values()].filter((s) => !s.store.get(`held-${i}`));
        assert.deepEqual(missing.map((s) => s.name), [], `held-${i} everywhere at its reply`);
      }
      await waitFor(() => linesSent >= 4 * n, 5000, "the flood's lines");
      await new Promise((r) => setTimeout(r, 200));
      // Over TCP each update's flood crosses itself: Singleton and Campbell get copies they hold
      // (7 record lines for 4 new copies). In memory a link does not send what the neighbour
      // holds: what is left are the copies written before the neighbour stored its first.
      if (mode.tcpLinks) {
        assert.ok(copies >= 2 * n, `${copies} copies of ${n} updates over TCP`);
      } else {
        assert.ok(copies <= 1.5 * n, `${copies} copies of ${n} updates dropped as held already`);
        assert.ok(linesSent <= 5.5 * n, `${linesSent} record lines for ${n} updates`);
      }
    } finally {
      off();
      c.conn.close();
    }
  });

  Deno.test(`in-process links, ${mode.name}: a stopped server's links go down both ways, stay down, and come back; it catches up`, async () => {
    await using t = await startSeedHerd({ tcpLinks: mode.tcpLinks });
    const events: HerdEvent[] = [];
    const off = t.herd.bus.subscribe((e) => events.push(e));
    try {
      await exchange(t.port("Hill"), "IAMAT before-stop +1+1 1700000000.5\n");
      await waitFor(() => everywhere(t, "before-stop"), 10_000, "before-stop everywhere");
      await t.herd.stopServer("Hill");
      // Its neighbours see their links to it down (it closed them: EOF at their end).
      await waitFor(
        () => !up(t, "Jaquez", "Hill") && !up(t, "Smith", "Hill"),
        10_000,
        "Hill's neighbours see the links down",
      );
      const downs = events.filter((e) => e.kind === "link.down" && e.peer === "Hill");
      assert.deepEqual(downs.map((e) => e.server).sort(), ["Jaquez", "Smith"]);
      // While it is stopped their dials fail: no link comes up (the redial's first back-off is
      // well inside this wait).
      await new Promise((r) => setTimeout(r, 1500));
      assert.ok(!up(t, "Jaquez", "Hill") && !up(t, "Smith", "Hill"));
      assert.equal(
        events.filter((e) => e.kind === "link.up" && (e.peer === "Hill" || e.server === "Hill"))
          .length,
        0,
        "no link to a stopped server",
      );
      // Records it misses: a catch-up of several batches.
      const missed = Array.from(
        { length: 2000 },
        (_, i) => `IAMAT missed-${i} -33.8+151.2 ${1_700_000_100 + i}.25\n`,
      );
      await exchange(t.port("Singleton"), missed.join(""), 20_000);
      await t.herd.startServer("Hill");
      await waitFor(
        () => up(t, "Hill", "Jaquez") && up(t, "Hill", "Smith") && up(t, "Jaquez", "Hill"),
        10_000,
        "Hill relinked",
      );
      // Started empty (no durable store here): everything comes back from its neighbours.
      await waitFor(
        () =>
          everywhere(t, "before-stop") &&
          missed.every((_, i) => everywhere(t, `missed-${i}`)),
        20_000,
        "Hill caught up",
      );
      assert.equal(t.herd.servers.get("Hill")!.store.size, 2001);
    } finally {
      off();
    }
  });

  Deno.test(`in-process links, ${mode.name}: a cut link stays down and the herd routes around; a delay holds its lines`, async () => {
    await using t = await startSeedHerd({ tcpLinks: mode.tcpLinks });
    t.herd.setLink("Hill", "Jaquez", { cut: true });
    await waitFor(
      () => !up(t, "Hill", "Jaquez") && !up(t, "Jaquez", "Hill"),
      10_000,
      "cut link down at both ends",
    );
    await exchange(t.port("Hill"), "IAMAT around +1+1 1700000000.5\n");
    await waitFor(() => everywhere(t, "around"), 10_000, "the record goes around the cut");
    const jaquez = t.herd.servers.get("Jaquez")!;
    const singleton = jaquez.links.findIndex((l) => l.peer === "Singleton");
    assert.equal(jaquez.store.get("around")!.via, singleton, "Jaquez got it from Singleton");
    assert.ok(!up(t, "Hill", "Jaquez"), "still cut");
    // A delay on Hill's other link: its lines wait there, the record reaches Smith no earlier.
    t.herd.setLink("Hill", "Smith", { delayMs: 400 });
    const sent = performance.now();
    await exchange(t.port("Hill"), "IAMAT delayed +1+1 1700000001.5\n");
    assert.equal(t.herd.servers.get("Smith")!.store.get("delayed"), undefined);
    await waitFor(() => everywhere(t, "delayed"), 10_000, "the delayed record arrives");
    assert.ok(performance.now() - sent >= 400, "not before the delay");
    // Restored: the cut link relinks and both ends agree.
    t.herd.setLink("Hill", "Jaquez", { cut: false });
    t.herd.setLink("Hill", "Smith", { delayMs: 0 });
    await waitFor(
      () => up(t, "Hill", "Jaquez") && up(t, "Jaquez", "Hill"),
      10_000,
      "restored link up",
    );
    const restored = t.herd.servers.get("Hill")!.links.find((l) => l.peer === "Jaquez")!;
    const before = restored.recordsReceived;
    await exchange(t.port("Jaquez"), "IAMAT after +2+2 1700000002.5\n");
    await waitFor(() => everywhere(t, "after"), 10_000, "after the restore");
    await waitFor(
      () => restored.recordsReceived > before,
      10_000,
      "records over the restored link",
    );
  });
}
