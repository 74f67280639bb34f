/** servers/ops/metrics.ts: label escaping, histogram buckets, zero-initialised series. */

import assert from "node:assert/strict";
import { EventBus } from "../servers/events.ts";
import { HerdMetrics } from "../servers/ops/metrics.ts";
import client from "prom-client";
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

Deno.test("metrics: Places statuses from outside make a bounded number of series (adversarial review)", async () => {
  const { bus, m } = metrics();
  const whatsat = (status: string) =>
    bus.emit({
      kind: "whatsat",
      t: 0,
      server: "Hill",
      client: "c",
      radiusKm: 1,
      bound: 1,
      provider: "legacy",
      status,
      count: 0,
      latencyMs: 1,
      coalesced: false,
    });
  whatsat("OK");
  // An upstream that answers a new status word each time: one series each, for good, before.
  for (let i = 0; i < 1000; i++) whatsat(`STATUS_${i}`);
  whatsat("OK");
  whatsat("ZERO_RESULTS");
  const text = await m.render();
  const series = text.split("\n").filter((l) => l.startsWith("herd_places_requests_total{"));
  assert.ok(series.length <= 40, `${series.length} series of herd_places_requests_total`);
  const e = parseExposition(text);
  const value = (status: string) =>
    e.value("herd_places_requests_total", { server: "Hill", provider: "legacy", status });
  assert.equal(value("OK"), 2);
  assert.equal(value("ZERO_RESULTS"), 1);
  // Every query is still counted: the ones past the bound under "other".
  const total = series.reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
  assert.equal(total, 1003);
  assert.ok(value("other")! > 0);
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

Deno.test("metrics: counts kept between scrapes are neither lost nor counted twice", async () => {
  const { bus, m } = metrics();
  const command = (seconds: number) =>
    bus.emit({
      kind: "command",
      t: 0,
      server: "Hill",
      conn: 1,
      verb: "IAMAT",
      result: "ok",
      reason: "",
      seconds,
    });
  const scrape = async () => {
    const e = parseExposition(await m.render());
    return [
      e.value("herd_commands_total", { server: "Hill", verb: "IAMAT", result: "ok", reason: "" }),
      e.value("herd_iamat_duration_seconds_count", { server: "Hill" }),
      e.value("herd_iamat_duration_seconds_bucket", { server: "Hill", le: "0.001" }),
      e.value("herd_iamat_duration_seconds_sum", { server: "Hill" }),
    ];
  };
  assert.deepEqual(await scrape(), [0, 0, 0, 0]);
  command(0.0005);
  command(0.5);
  assert.deepEqual(await scrape(), [2, 2, 1, 0.5005]);
  assert.deepEqual(await scrape(), [2, 2, 1, 0.5005], "a scrape changes nothing");
  command(0.25);
  assert.deepEqual(await scrape(), [3, 3, 1, 0.7505]);
  // A remote dashboard's view of the same counts.
  const json = await m.exportServer("Hill");
  const commands = json.find((f) => f.name === "herd_commands_total")!;
  assert.equal(
    commands.values.find((v) => v.labels.verb === "IAMAT" && v.labels.result === "ok")?.value,
    3,
  );
  m.close();
});

Deno.test("metrics: the counts of every update land in the series started at 0, one series per label set", async () => {
  const { bus, m } = metrics();
  const record = {
    origin: "Hill",
    diff: "+0.000100000",
    client: "k",
    location: "+1+2",
    time: "1700000000",
  };
  const t = 1_700_000_000_500;
  for (let i = 0; i < 3; i++) {
    bus.emit({
      kind: "command",
      t,
      server: "Hill",
      conn: 1,
      verb: "IAMAT",
      result: "ok",
      reason: "",
      seconds: 0.002,
    });
    bus.emit({ kind: "location.accepted", t, server: "Hill", record, from: null, lat: 1, lng: 2 });
    bus.emit({
      kind: "location.accepted",
      t,
      server: "Hill",
      record,
      from: "Jaquez",
      lat: 1,
      lng: 2,
    });
    for (const from of [null, "Jaquez"]) {
      bus.emit({ kind: "location.dropped", t, server: "Hill", record, from, reason: "duplicate" });
    }
    bus.emit({
      kind: "propagation.sent",
      t,
      server: "Hill",
      to: "Jaquez",
      records: [record, record],
    });
    bus.emit({
      kind: "propagation.received",
      t,
      server: "Hill",
      from: "Jaquez",
      records: [record],
      catchUp: true,
      duplicates: 1,
    });
  }
  const text = await m.render();
  const series = (name: string) =>
    text.split("\n").filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  assert.deepEqual(
    series("herd_commands_total").filter((l) => l.includes('verb="IAMAT",result="ok"')),
    ['herd_commands_total{server="Hill",verb="IAMAT",result="ok",reason=""} 3'],
  );
  assert.deepEqual(series("herd_updates_accepted_total"), [
    'herd_updates_accepted_total{server="Hill",from="client"} 3',
    'herd_updates_accepted_total{server="Hill",from="Jaquez"} 3',
  ]);
  assert.deepEqual(series("herd_updates_dropped_total"), [
    'herd_updates_dropped_total{server="Hill",from="client",reason="stale"} 0',
    'herd_updates_dropped_total{server="Hill",from="client",reason="duplicate"} 3',
    'herd_updates_dropped_total{server="Hill",from="client",reason="full"} 0',
    'herd_updates_dropped_total{server="Hill",from="Jaquez",reason="duplicate"} 6',
  ]);
  assert.deepEqual(series("herd_updates_propagated_total"), [
    'herd_updates_propagated_total{server="Hill",peer="Jaquez"} 6',
  ]);
  assert.deepEqual(series("herd_updates_received_total"), [
    'herd_updates_received_total{server="Hill",peer="Jaquez"} 3',
  ]);
  assert.deepEqual(series("herd_iamat_duration_seconds_count"), [
    'herd_iamat_duration_seconds_count{server="Hill"} 3',
  ]);
  assert.deepEqual(series("herd_propagation_delay_seconds_count"), [
    'herd_propagation_delay_seconds_count{server="Hill"} 3',
  ]);
  m.close();
});

Deno.test("metrics: series appear in the order of their first count, each label set apart", async () => {
  const { bus, m } = metrics();
  for (const peer of ["Smith", "Jaquez"]) {
    bus.emit({
      kind: "receipt.late",
      t: 0,
      server: "Hill",
      client: "c",
      peers: [peer],
      waitedMs: 50,
    });
  }
  const text = await m.render();
  const lines = text.split("\n").filter((l) => l.startsWith("herd_receipts_late_total{"));
  // Jaquez (a neighbour) was started at 0 before Smith's first count.
  assert.deepEqual(lines, [
    'herd_receipts_late_total{server="Hill",peer="Jaquez"} 1',
    'herd_receipts_late_total{server="Hill",peer="Smith"} 1',
  ]);
  m.close();
});

Deno.test("metrics: counts from before the registry is made are in the first scrape", async () => {
  // prom-client and the registry come at the first scrape (servers/ops/metrics.ts): every count
  // and every series added before then must be in it, as if they had been there all along.
  const { bus, m } = metrics();
  bus.emit({ kind: "client.connect", t: 0, server: "Hill", conn: 1, remote: "127.0.0.1:1" });
  bus.emit({ kind: "persist.commit", t: 0, server: "Hill", records: 1, seconds: 0.002, ok: true });
  let added = 0;
  m.extend((registry, client) => {
    added++;
    new client.Gauge({ name: "early_extension", help: "x", registers: [registry] }).set(7);
  });
  assert.equal(added, 0, "nothing is made before a scrape asks");
  assert.equal(m.contentType, client.Registry.PROMETHEUS_CONTENT_TYPE);
  const first = parseExposition(await m.render());
  assert.equal(added, 1);
  assert.equal(first.value("herd_client_connections_total", { server: "Hill" }), 1);
  assert.equal(first.value("herd_persist_commit_duration_seconds_count", { server: "Hill" }), 1);
  assert.equal(
    first.value("herd_persist_commit_duration_seconds_bucket", { server: "Hill", le: "0.0025" }),
    1,
  );
  assert.equal(first.value("early_extension", {}), 7);
  assert.equal(first.value("herd_build_info", { version: "unknown" }), 1);
  // One registry: the accessor's is the one rendered, and a later extension goes on it at once.
  const registry = await m.registry();
  assert.equal(registry, await m.registry());
  assert.equal((await registry.getSingleMetricAsString("early_extension")).includes(" 7"), true);
  m.extend((r, c) => {
    added++;
    new c.Gauge({ name: "late_extension", help: "x", registers: [r] }).set(3);
  });
  assert.equal(added, 2);
  bus.emit({ kind: "client.connect", t: 0, server: "Hill", conn: 2, remote: "127.0.0.1:2" });
  const second = parseExposition(await m.render());
  assert.equal(second.value("herd_client_connections_total", { server: "Hill" }), 2);
  assert.equal(second.value("late_extension", {}), 3);
  m.close();
});
