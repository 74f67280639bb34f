/** dashboard/islands/_model.ts: the browser-side model (time order, applying events, the graph). */

import assert from "node:assert/strict";
import { accepted } from "./_helpers/events.ts";
import type { HerdEvent } from "../servers/events.ts";
import { DEFAULT_LINKS, DEFAULT_NAMES, DemoHerd } from "../dashboard/dev/demo_herd.ts";
import {
  applyEvents,
  circleOrder,
  compareTime,
  describe,
  edgeLabel,
  formatCount,
  graphLinks,
  unstackLabels,
} from "../dashboard/islands/_model.ts";
import type { DashEvent, HerdSnapshot } from "../dashboard/types.ts";

Deno.test("model: exact decimal time order", () => {
  assert.ok(compareTime("1621464827.959498503", "1621464827.959498502") > 0);
  assert.ok(compareTime("9", "10") < 0);
  assert.deepEqual(compareTime("1.50", "1.5"), 0);
  assert.deepEqual(compareTime("007", "7"), 0);
  assert.ok(compareTime("1621464827.9594985031", "1621464827.959498503") > 0);
});

const twoServers = (): HerdSnapshot => ({
  servers: [
    {
      name: "A",
      host: "h",
      port: 1,
      running: true,
      connections: 0,
      records: 0,
      neighbors: ["B"],
      links: [{ peer: "B", up: true }],
    },
    {
      name: "B",
      host: "h",
      port: 2,
      running: true,
      connections: 0,
      records: 0,
      neighbors: ["A"],
      links: [{ peer: "A", up: true }],
    },
  ],
  records: [],
  places: "offline",
});

function dash(e: HerdEvent, id: number): DashEvent {
  return { ...e, id } as DashEvent;
}

Deno.test("model: applyEvents keeps the newest record per client and tracks links", () => {
  const s0 = twoServers();
  const s1 = applyEvents(s0, [
    dash(accepted("A", "k", "5", 10, 20), 1),
    dash(accepted("B", "k", "4", 30, 40), 2), // older: ignored
    dash({ kind: "client.connect", t: 0, server: "A", conn: 1, remote: "x" }, 3),
    dash({ kind: "link.down", t: 0, server: "A", peer: "B", reason: "x" }, 4),
  ]);
  assert.deepEqual(s0.records, []); // not mutated
  assert.deepEqual(s1.records.length, 1);
  assert.deepEqual([s1.records[0].lat, s1.records[0].lng], [10, 20]);
  assert.deepEqual(s1.servers[0].connections, 1);
  assert.deepEqual(graphLinks(s1).map((l) => l.state), ["half"]);
  const s2 = applyEvents(s1, [dash({ kind: "server.down", t: 0, server: "B" }, 5)]);
  assert.deepEqual(graphLinks(s2).map((l) => l.state), ["down"]);
  assert.deepEqual(s2.servers[1].running, false);
  const s3 = applyEvents(s2, [dash(accepted("B", "k", "6", 1, 2), 6)]);
  assert.deepEqual(s3.records[0].time, "6");
});

Deno.test("model: the default herd is laid out with no crossing links", () => {
  const herd = new DemoHerd();
  const snap = herd.snapshot();
  const links = graphLinks(snap);
  assert.deepEqual(links.length, DEFAULT_LINKS.length);
  const order = circleOrder(DEFAULT_NAMES, links);
  assert.deepEqual(order[0], "Hill");
  assert.deepEqual(new Set(order).size, 5);
  // Hill–Jaquez–Singleton–Campbell–Smith is a cycle of links: neighbours on the circle.
  const adj = (a: string, b: string) =>
    links.some((l) => (l.a === a && l.b === b) || (l.a === b && l.b === a));
  for (let i = 0; i < 5; i++) assert.ok(adj(order[i], order[(i + 1) % 5]), order.join(","));
});

Deno.test("model: describe() has words for every streamed kind", () => {
  assert.deepEqual(describe(dash(accepted("A", "k"), 1)), "k at +1+2 from client (origin A)");
  assert.deepEqual(
    describe(
      {
        kind: "propagation.sent",
        t: 0,
        server: "A",
        to: "B",
        count: 7,
        clients: ["a", "b"],
        id: 2,
      } as DashEvent,
    ),
    "→ B: 7 records (a, b, …)",
  );
  // A busy tick's summary of several batches (dashboard/coalesce.ts) says how many.
  assert.deepEqual(
    describe(
      {
        kind: "propagation.received",
        t: 0,
        server: "B",
        from: "A",
        count: 1200,
        batches: 12,
        clients: ["a"],
        id: 3,
      } as DashEvent,
    ),
    "← A: 1,200 records in 12 batches (a, …)",
  );
});

Deno.test("model: edges carry round trip and records behind when the herd reports them", () => {
  const s0 = twoServers();
  // Without link statistics (an older herd): no label.
  assert.deepEqual(graphLinks(s0).map((l) => [l.rttMs, l.behind, edgeLabel(l)]), [
    [null, [null, null], ""],
  ]);
  const withStats: HerdSnapshot = {
    ...s0,
    servers: s0.servers.map((s) => ({
      ...s,
      links: s.links.map((l) => ({
        ...l,
        up: true,
        ...(s.name === "A" ? { rttMs: 0.25, behind: 0 } : { rttMs: 1.5, behind: 1200 }),
      })),
    })),
  };
  const [l] = graphLinks(withStats);
  assert.deepEqual([l.state, l.rttMs, l.behind], ["up", 1.5, [0, 1200]]);
  assert.deepEqual(edgeLabel(l), "1.50 ms · B→A 1,200 behind");
  // A link going down keeps its figures in the snapshot but the edge shows none.
  const down = applyEvents(withStats, [dash({ kind: "server.down", t: 0, server: "B" }, 1)]);
  assert.deepEqual(edgeLabel(graphLinks(down)[0]), "");
  // link.up/down events keep the statistics they do not change.
  const half = applyEvents(withStats, [
    dash({ kind: "link.down", t: 0, server: "A", peer: "B", reason: "x" }, 2),
  ]);
  assert.deepEqual(graphLinks(half)[0].rttMs, 1.5);
});

Deno.test("model: counts have thousands separators, whatever the browser's locale", () => {
  assert.deepEqual(formatCount(1_000_000), "1,000,000");
  assert.deepEqual(formatCount(999), "999");
  assert.deepEqual(
    describe(
      dash({
        kind: "sync.done",
        t: 0,
        server: "A",
        peer: "B",
        sent: 1_000_000,
        received: 25_000,
        ms: 8500,
      }, 1),
    ),
    "synced with B: sent 1,000,000, received 25,000 in 8,500 ms",
  );
});

Deno.test("model: a cut link is its own state (named by the end that cut it), delay kept", () => {
  const s0 = twoServers();
  const cut = applyEvents(s0, [
    dash({ kind: "link.control", t: 0, server: "B", peer: "A", cut: true, delayMs: 0 }, 1),
    dash({ kind: "link.down", t: 0, server: "B", peer: "A", reason: "link cut" }, 2),
  ]);
  const [l] = graphLinks(cut);
  assert.deepEqual([l.a, l.b, l.state, l.cutBy, l.delayMs], ["A", "B", "cut", ["B"], 0]);
  // A server going down keeps the cut: it is a setting, not a state of the connection.
  const down = applyEvents(cut, [dash({ kind: "server.down", t: 0, server: "B" }, 3)]);
  assert.deepEqual(graphLinks(down)[0].state, "cut");
  const slow = applyEvents(cut, [
    dash({ kind: "link.control", t: 0, server: "B", peer: "A", cut: false, delayMs: 250 }, 4),
    dash({ kind: "link.up", t: 0, server: "B", peer: "A", direction: "out" }, 5),
  ]);
  assert.deepEqual(graphLinks(slow)[0].delayMs, 250);
  assert.deepEqual(graphLinks(slow)[0].cutBy, []);
  assert.deepEqual(
    describe(
      dash({ kind: "link.control", t: 0, server: "B", peer: "A", cut: true, delayMs: 9 }, 6),
    ),
    "link to A cut, delay 9 ms",
  );
});

Deno.test("graph labels: two that would overlap are stacked, apart ones stay where they are", () => {
  // Two links from one node at a narrow angle: their labels land 9 px apart (the dashboard test
  // saw "caught up 4 records" over "caught up 2 records" after a restart).
  const a = { x: 1063, y: 247, anchor: "start" as const, width: 133, lines: 1 };
  const b = { x: 1072, y: 247, anchor: "start" as const, width: 133, lines: 1 };
  const far = { x: 500, y: 247, anchor: "end" as const, width: 80, lines: 2 };
  const [pa, pb, pf] = unstackLabels([a, b, far], 14);
  assert.deepEqual(pa, a);
  assert.deepEqual(pf, far, "a label clear of the others does not move");
  assert.equal(pb.x, b.x);
  // Boxes run from 11 px above the baseline to 3 px below the last line: b now starts below a.
  assert.ok(pb.y - 11 > a.y + 3, `moved to ${pb.y}`);
  // A third on the same spot goes below both; two-line labels take both lines' room.
  const c = { ...b, x: 1080, lines: 2 };
  const [, p2, p3] = unstackLabels([a, c, b], 14);
  assert.ok(p2.y - 11 > a.y + 3);
  assert.ok(p3.y - 11 > p2.y + 14 + 3, `third at ${p3.y}, second at ${p2.y}`);
  // Centred and end-anchored labels are measured from their anchor.
  const mid = { x: 100, y: 50, anchor: "middle" as const, width: 100, lines: 1 };
  const end = { x: 140, y: 50, anchor: "end" as const, width: 30, lines: 1 };
  assert.equal(unstackLabels([mid, end])[1].y > 50, true, "end label inside the centred one");
  assert.equal(unstackLabels([mid, { ...end, x: 180 }])[1].y, 50, "clear of it");
});
