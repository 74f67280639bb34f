/** servers/ops/metrics.ts: label escaping, histogram buckets, zero-initialised series. */

import assert from "node:assert/strict";
import { EventBus } from "../servers/events.ts";
import { HerdMetrics } from "../servers/ops/metrics.ts";
import { parseExposition } from "./_helpers/prom.ts";

function metrics(): { bus: EventBus; m: HerdMetrics } {
  const bus = new EventBus();
  const snapshot = () => ({
    servers: [{
      name: "Hill",
      host: "127.0.0.1",
      port: 1,
      running: true,
      connections: 0,
      records: 0,
      neighbors: ["Jaquez"],
      links: [],
    }],
    records: [],
    places: "offline",
  });
  return { bus, m: new HerdMetrics({ bus, snapshot }) };
}

Deno.test("metrics: a label value from outside is escaped and reads back exactly", async () => {
  const { bus, m } = metrics();
  const status = 'a"b\\c\nd';
  bus.emit({
    kind: "whatsat",
    t: 0,
    server: "Hill",
    client: "c",
    radiusKm: 1,
    bound: 1,
    provider: "offline",
    status,
    count: 0,
    latencyMs: 1,
    coalesced: false,
  });
  const text = await m.render();
  assert.match(text, /status="a\\"b\\\\c\\nd"/);
  const e = parseExposition(text);
  assert.equal(
    e.value("herd_places_requests_total", { server: "Hill", provider: "offline", status }),
    1,
  );
  m.close();
});

Deno.test("metrics: histogram buckets are cumulative; known series start at 0", async () => {
  const { bus, m } = metrics();
  for (const seconds of [0.0005, 0.0015, 5]) {
    bus.emit({ kind: "persist.commit", t: 0, server: "Hill", records: 1, seconds, ok: true });
  }
  const e = parseExposition(await m.render());
  const le = (b: string) =>
    e.value("herd_persist_commit_duration_seconds_bucket", { server: "Hill", le: b });
  assert.deepEqual([le("0.0005"), le("0.001"), le("0.0025"), le("2.5"), le("10"), le("+Inf")], [
    1,
    1,
    2,
    2,
    3,
    3,
  ]);
  assert.equal(e.value("herd_persist_commit_duration_seconds_count", { server: "Hill" }), 3);
  assert.equal(e.value("herd_persist_commit_duration_seconds_sum", { server: "Hill" }), 5.002);
  assert.equal(e.value("herd_persist_commit_failures_total", { server: "Hill" }), 0);
  assert.equal(e.value("herd_updates_propagated_total", { server: "Hill", peer: "Jaquez" }), 0);
  assert.equal(e.value("herd_peer_rejected_total", { server: "Hill", reason: "bad-proof" }), 0);
  m.close();
});
