/**
 * RemoteHerd (servers/remote_herd.ts) against a real herd: the observer handshake, the merged
 * snapshot and event stream, a server going away and coming back (redial with backoff), a wrong
 * secret, and the dashboard refusing stop/start for a remote herd.
 */

import assert from "node:assert/strict";
import { allWatching, exchange, startSeedHerd, type TestHerd, waitFor } from "./_helpers/net.ts";
import type { HerdEvent } from "../servers/events.ts";
import { MAX_KNOWN_CLIENTS, RemoteHerd } from "../dashboard/remote_herd.ts";
import { serveDashboard } from "../dashboard/app.ts";
import { ClientIndex } from "../dashboard/client_index.ts";
import type { HerdConfig } from "../servers/config.ts";

const SECRET = "test-secret-0123456789";

/** A remote view of `config`'s servers as the dashboard's, redialling fast. */
function watcher(config: HerdConfig): RemoteHerd {
  return new RemoteHerd(config, {
    secret: SECRET,
    observer: "test-dash",
    minBackoffMs: 50,
    maxBackoffMs: 200,
  });
}

/**
 * Watches the herd `t` with a {@linkcode watcher} that records every event in `seen`: `fn` runs
 * once every server is watched (within `watchMs`); the watcher and the herd stop after it,
 * whatever it threw.
 */
async function watching(
  t: TestHerd,
  fn: (w: { remote: RemoteHerd; seen: HerdEvent[] }) => void | Promise<void>,
  watchMs = 5000,
): Promise<void> {
  const remote = watcher(t.config);
  const seen: HerdEvent[] = [];
  remote.bus.subscribe((e) => seen.push(e));
  try {
    remote.start();
    await waitFor(() => allWatching(remote), watchMs, "all watching");
    await fn({ remote, seen });
  } finally {
    await remote.stop();
    await t.close();
  }
}

function nowTime(): string {
  const ms = Date.now();
  return `${Math.floor(ms / 1000)}.${String(ms % 1000).padStart(3, "0")}000000`;
}

Deno.test("RemoteHerd watches every server: merged snapshot, events, down and back up", async () => {
  const t = await startSeedHerd();
  const remote = watcher(t.config);
  const seen: HerdEvent[] = [];
  remote.bus.subscribe((e) => seen.push(e));
  try {
    remote.start();
    await waitFor(
      () => allWatching(remote),
      5000,
      "all watching",
    );
    const snap = remote.snapshot();
    assert.deepEqual(snap.servers.map((s) => s.name), t.herd.snapshot().servers.map((s) => s.name));
    assert.ok(
      snap.servers.every((s) => s.running && s.links.every((l) => l.up)),
      JSON.stringify(snap.servers),
    );

    // An IAMAT at Hill floods (exchange sends a binary string: one byte per char) to all five; the observer sees each accept it.
    const client = "caf\xc3\xa9.remote";
    const at = await exchange(
      t.port("Hill"),
      `IAMAT ${client} +34.068930-118.445127 ${nowTime()}\n`,
    );
    assert.match(at, /^AT Hill /);
    await waitFor(
      () =>
        new Set(
          seen.filter((e) => e.kind === "location.accepted" && e.record.client === client).map((
            e,
          ) => e.server),
        ).size === 5,
      3000,
      "accepted at all five",
    ).catch((err) => {
      console.error(
        seen.map((e) =>
          `${e.server} ${e.kind} ${JSON.stringify((e as { record?: unknown }).record ?? "")}`
        ).join("\n"),
      );
      throw err;
    });
    assert.ok(seen.some((e) => e.kind === "propagation.sent" && e.server === "Hill"));
    const rec = remote.snapshot().records.find((r) => r.client === client);
    assert.ok(rec, "the record is in the merged snapshot (as a binary string)");
    assert.deepEqual(rec.origin, "Hill");
    assert.ok(Math.abs(rec.lat - 34.06893) < 1e-9);
    await waitFor(
      () => remote.snapshot().servers.every((s) => s.records >= 1),
      2000,
      "record counts",
    );

    // Hill stops: the remote view shows it stopped, with its neighbours' links to it down.
    seen.length = 0;
    await t.herd.stopServer("Hill");
    await waitFor(
      () => remote.snapshot().servers.find((s) => s.name === "Hill")!.running === false,
      3000,
      "Hill down",
    );
    await waitFor(
      () =>
        remote.snapshot().servers.find((s) => s.name === "Jaquez")!.links.find((l) =>
          l.peer === "Hill"
        )!.up === false,
      5000,
      "Jaquez–Hill down",
    );
    assert.ok(seen.some((e) => e.kind === "server.down" && e.server === "Hill"));
    // Back up: the observer redials and the links recover.
    await t.herd.startServer("Hill");
    await waitFor(() => remote.status().Hill.status === "watching", 5000, "Hill watched again");
    await waitFor(
      () => remote.snapshot().servers.every((s) => s.running && s.links.every((l) => l.up)),
      8000,
      "links recovered",
    );
    assert.ok(seen.some((e) => e.kind === "server.up" && e.server === "Hill"));
  } finally {
    await remote.stop();
    await t.close();
  }
});

Deno.test("RemoteHerd with a wrong secret never watches and says why", async () => {
  const t = await startSeedHerd();
  const remote = new RemoteHerd(t.config, {
    secret: "wrong",
    minBackoffMs: 50,
    maxBackoffMs: 100,
    handshakeTimeoutMs: 1000,
  });
  try {
    remote.start();
    await waitFor(
      () => Object.values(remote.status()).every((s) => s.error !== undefined),
      4000,
      "errors",
    );
    const st = remote.status();
    assert.ok(Object.values(st).every((s) => s.status !== "watching"), JSON.stringify(st));
    assert.ok(remote.snapshot().servers.every((s) => !s.running));
  } finally {
    await remote.stop();
    await t.close();
  }
});

Deno.test("RemoteHerd: unreachable servers show stopped; the dashboard refuses stop/start (409)", async () => {
  const t = await startSeedHerd();
  const config = t.config;
  await t.close(); // nothing listens any more
  const remote = new RemoteHerd(config, { secret: SECRET, minBackoffMs: 50, maxBackoffMs: 100 });
  remote.start();
  const d = await serveDashboard(remote, { host: "127.0.0.1", port: 0, quiet: true });
  try {
    await waitFor(
      () =>
        Object.values(remote.status()).every((s) =>
          s.status === "backoff" || s.status === "connecting"
        ),
      2000,
      "backoff",
    );
    const state = await (await fetch(`${d.url}/api/state`)).json();
    assert.ok(state.servers.every((s: { running: boolean }) => !s.running));
    const res = await fetch(`${d.url}/api/servers/Hill/start`, {
      method: "POST",
      headers: { origin: d.url },
    });
    assert.deepEqual(res.status, 409);
    assert.match((await res.json()).error, /remote/);
  } finally {
    await d.close();
    await remote.stop();
  }
});

Deno.test("RemoteHerd shows a link cut where the servers run: live, and in a fresh STATE", async () => {
  const t = await startSeedHerd();
  const watch = () => watcher(t.config);
  const hillToJaquez = (r: RemoteHerd) =>
    r.snapshot().servers.find((s) => s.name === "Hill")!.links.find((l) => l.peer === "Jaquez")!;
  const live = watch();
  let fresh: RemoteHerd | undefined;
  try {
    live.start();
    await waitFor(
      () => allWatching(live),
      5000,
      "all watching",
    );
    t.herd.setLink("Hill", "Jaquez", { cut: true, delayMs: 40 });
    await waitFor(() => hillToJaquez(live).cut === true, 5000, "the cut seen live");
    assert.deepEqual(hillToJaquez(live).delayMs, 40);
    await waitFor(() => hillToJaquez(live).up === false, 5000, "the cut link down");
    fresh = watch();
    fresh.start();
    await waitFor(() => fresh!.status().Hill.status === "watching", 5000, "Hill watched");
    assert.deepEqual({ ...hillToJaquez(fresh) }, {
      peer: "Jaquez",
      up: false,
      cut: true,
      delayMs: 40,
    });
    t.herd.setLink("Hill", "Jaquez", { cut: false, delayMs: 0 });
    await waitFor(
      () => hillToJaquez(live).cut === false && hillToJaquez(live).up,
      10_000,
      "restored",
    );
  } finally {
    await fresh?.stop();
    await live.stop();
    await t.close();
  }
});

Deno.test("RemoteHerd: a batch event's count is bounded; a huge one is skipped, the stream kept (adversarial review)", async () => {
  // Found by an adversarial review (adv12c): the observer sends a batch's size as `count`, and
  // the dashboard rebuilt an array of that length, whatever the line said: count 10^7 took
  // ~80 MB per event; 2^32 threw "Invalid array length" and dropped the stream; 1e300 hangs.
  const t = await startSeedHerd();
  await watching(t, async ({ remote, seen }) => {
    const dropped: string[] = []; // the sizes of the batches the dashboard passed on
    const hill = t.herd.servers.get("Hill")!;
    const ups = () => seen.filter((e) => e.kind === "server.up" && e.server === "Hill").length;
    const upsBefore = ups();
    // A server's batch as the observer sends it: the first client IDs and the size (observe.ts
    // takes the size from `records.length`: a sparse array stands for a huge batch here).
    for (const count of [10_000_000, 3_000]) {
      const records = new Array(count);
      records[0] = { client: "big", origin: "Hill", diff: "+0", location: "+1+1", time: "1" };
      hill.bus.emit({
        kind: "propagation.received",
        t: Date.now(),
        server: "Hill",
        from: "Jaquez",
        records,
        catchUp: false,
      });
    }
    // A normal event after them arrives on the same stream.
    hill.bus.emit({ kind: "server.up", t: Date.now(), server: "Hill", host: "x", port: 1 });
    await waitFor(
      () => seen.some((e) => e.kind === "server.up" && e.server === "Hill" && e.host === "x"),
      5000,
      "the event after the huge batches",
    );
    for (const e of seen) {
      if (e.kind === "propagation.received" && e.server === "Hill") {
        dropped.push(String(e.records.length));
        assert.ok(e.records.length <= 65_536, `${e.records.length} records rebuilt`);
      }
    }
    // The huge batch skipped, the ordinary one restored to its size.
    assert.deepEqual(dropped, ["3000"]);
    assert.equal(remote.status().Hill.status, "watching");
    assert.equal(remote.status().Hill.error, undefined);
    // No reconnect: the only server.up after is the one emitted above.
    assert.equal(ups(), upsBefore + 1, `stream redialled (${dropped.join(", ")})`);
  });
});

Deno.test("RemoteHerd: link events name servers of the config only; others add no link (adversarial review)", async () => {
  // Found by an adversarial review (adv12c): every `link.up` naming a new peer added a link to
  // the server's state, kept and sent in every snapshot: a stream of made-up names grew it
  // without bound.
  const t = await startSeedHerd();
  await watching(t, async ({ remote }) => {
    const hill = t.herd.servers.get("Hill")!;
    const links = () => remote.snapshot().servers.find((s) => s.name === "Hill")!.links;
    const before = links().map((l) => l.peer).sort();
    for (let i = 0; i < 1000; i++) {
      hill.bus.emit({
        kind: "link.up",
        t: Date.now(),
        server: "Hill",
        peer: `ghost-${i}`,
        direction: "out",
      });
    }
    hill.bus.emit({
      kind: "link.down",
      t: Date.now(),
      server: "Hill",
      peer: before[0],
      reason: "test",
    });
    await waitFor(
      () => links().some((l) => l.peer === before[0] && !l.up),
      5000,
      "the real link.down",
    );
    assert.deepEqual(links().map((l) => l.peer).sort(), before);
  });
});

Deno.test("RemoteHerd: a STATE of the wrong types keeps the stream, shows the config's name and numbers, never NaN (adversarial review)", async () => {
  // Found by an adversarial review (adv12c): `links: "x"` threw in the STATE handler, so the
  // server was redialled for ever and never shown as watched; a string count showed as NaN.
  const t = await startSeedHerd();
  const hill = t.herd.servers.get("Hill")!;
  // What Hill's observers are told it is (a member's process could say anything).
  (hill as unknown as { state(): unknown }).state = () => ({
    name: "Impostor",
    host: "<b>x</b>",
    port: "80",
    running: true,
    connections: "many",
    records: -5,
    neighbors: ["Jaquez", 7, "ghost"],
    links: "x",
  });
  await watching(t, ({ remote }) => {
    const s = remote.snapshot().servers.find((x) => x.name === "Hill");
    const config = t.config.servers.find((x) => x.name === "Hill")!;
    assert.deepEqual(s, {
      name: "Hill",
      host: config.host,
      port: config.port,
      running: true,
      connections: 0,
      records: 0,
      neighbors: ["Jaquez"],
      links: [],
    });
  });
});

Deno.test("RemoteHerd: an event whose record has fields of the wrong types is skipped; the stream and the view are kept (adversarial review)", async () => {
  // Found by an adversarial review (adv12c): a `location.accepted` whose record had a number for
  // `origin` was merged into the view, and every snapshot of it after threw (displayClip of a
  // number); one with no record threw in the handler and dropped the stream.
  const t = await startSeedHerd();
  await watching(t, async ({ remote, seen }) => {
    const hill = t.herd.servers.get("Hill")!;
    const ups = () => seen.filter((e) => e.kind === "server.up" && e.server === "Hill").length;
    const upsBefore = ups();
    const bad = [
      { client: "evil", origin: 5, diff: "+0", location: "+1+1", time: "1" },
      { client: 7, origin: "Hill", diff: "+0", location: "+1+1", time: "1" },
      null,
    ];
    for (const record of bad) {
      hill.bus.emit({
        kind: "location.accepted",
        t: Date.now(),
        server: "Hill",
        from: null,
        record,
        lat: 1,
        lng: 1,
      } as unknown as HerdEvent);
    }
    hill.bus.emit({ kind: "server.up", t: Date.now(), server: "Hill", host: "x", port: 1 });
    await waitFor(
      () => seen.some((e) => e.kind === "server.up" && e.server === "Hill" && e.host === "x"),
      5000,
      "the event after the malformed ones",
    );
    assert.equal(ups(), upsBefore + 1, "the stream was not redialled");
    assert.ok(!seen.some((e) => e.kind === "location.accepted" && e.server === "Hill"));
    const snap = remote.snapshot(); // threw before the fix
    assert.ok(!snap.records.some((r) => r.client === "evil"));
  });
});

Deno.test("RemoteHerd: an observed event carries no text or value beyond its shape; a dashboard keeps it small (adversarial review)", async () => {
  // Found by an adversarial review (adv15): events other than location, WHATSAT and invalid-line
  // events went from a member's stream to the bus, and into the dashboard's ring of 10,000
  // events, whole: a 200 KB `remote`, `reason` or extra field (any member may send any JSON up to
  // the observer line limit, ~500 KB) was kept per event, so 10,000 of them held gigabytes.
  const t = await startSeedHerd();
  await watching(t, async ({ remote, seen }) => {
    const hill = t.herd.servers.get("Hill")!;
    const ups = () => seen.filter((e) => e.kind === "server.up" && e.server === "Hill").length;
    const upsBefore = ups();
    const big = "x".repeat(200_000);
    const now = Date.now();
    const record = { client: "fat", origin: "Hill", diff: "+0", location: "+1+1", time: "1" };
    const hostile = [
      { kind: "client.connect", t: now, server: "Hill", conn: 1, remote: big },
      { kind: "client.disconnect", t: now, server: "Hill", conn: 1, remote: "r", reason: big },
      { kind: "link.down", t: now, server: "Hill", peer: "Jaquez", reason: big },
      { kind: "error", t: now, server: "Hill", reason: "internal", message: big },
      { kind: "server.down", t: now, server: "Hill", junk: { deep: [big] } },
      {
        kind: "sync.done",
        t: now,
        server: "Hill",
        peer: "Jaquez",
        sent: 1,
        received: 1,
        ms: 1,
        junk: big,
      },
      {
        kind: "location.accepted",
        t: now,
        server: "Hill",
        from: null,
        lat: 1,
        lng: 1,
        record: { ...record, junk: big },
      },
      { kind: "receipt.late", t: now, server: "Hill", client: "c", peers: [big], waitedMs: 1 },
    ];
    for (const e of hostile) hill.bus.emit(e as unknown as HerdEvent);
    hill.bus.emit({ kind: "server.up", t: Date.now(), server: "Hill", host: "x", port: 1 });
    await waitFor(
      () => seen.some((e) => e.kind === "server.up" && e.server === "Hill" && e.host === "x"),
      5000,
      "the event after the hostile ones",
    );
    for (const e of seen) {
      const size = JSON.stringify(e).length;
      assert.ok(size < 8_192, `a ${e.kind} event of ${size} bytes reached the bus`);
    }
    assert.equal(ups(), upsBefore + 1, "the stream was not redialled");
    assert.equal(remote.status().Hill.status, "watching");
  });
});

Deno.test("RemoteHerd: a member's malformed or foreign METRICS never break the dashboard's /metrics (adversarial review)", async () => {
  // Found by an adversarial review (adv15): a server's METRICS line went to prom-client's
  // aggregator as it came: one `null` family (or one without an aggregator) made every scrape of
  // the remote dashboard a 500; a name outside Prometheus' syntax broke the exposition for every
  // scraper; a sample labelled with another server was summed into that server's series.
  const t = await startSeedHerd();
  const family = (name: string, server: string, value: number) => ({
    name,
    help: "h",
    type: "gauge",
    aggregator: "sum",
    values: [{ value, labels: { server } }],
  });
  const hill = t.herd.servers.get("Hill")!;
  const jaquez = t.herd.servers.get("Jaquez")!;
  hill.metricsExport = () =>
    Promise.resolve([
      null,
      {},
      { name: "herd_x", type: "gauge", values: [] },
      { ...family("bad name{", "Hill", 1), help: "h\n# EVIL" },
      family("herd_records", "Jaquez", 999), // another server's series
      family("herd_build_info", "Hill", 5), // the dashboard's own family
      {
        ...family("herd_bad_label", "Hill", 1),
        values: [{ value: 1, labels: { server: "Hill", "a-b": "x" } }],
      },
      family("herd_client_connections", "Hill", 3),
    ]);
  jaquez.metricsExport = () => Promise.resolve([family("herd_records", "Jaquez", 7)]);
  const remote = watcher(t.config);
  remote.start();
  const d = await serveDashboard(remote, { host: "127.0.0.1", port: 0, quiet: true });
  try {
    await waitFor(() => allWatching(remote), 5000, "all watching");
    await waitFor(() => remote.metricsJson().length >= 2, 5000, "both reports");
    const res = await fetch(`${d.url}/metrics`);
    const text = await res.text();
    assert.equal(res.status, 200, text.slice(0, 300));
    assert.match(text, /^herd_records\{server="Jaquez"\} 7$/m);
    assert.match(text, /^herd_client_connections\{server="Hill"\} 3$/m);
    assert.doesNotMatch(text, /EVIL|bad name|a-b|herd_bad_label|999/);
    for (const line of text.split("\n")) {
      if (line === "" || line.startsWith("# HELP ") || line.startsWith("# TYPE ")) continue;
      assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+$/, `exposition line ${line}`);
    }
  } finally {
    await d.close();
    await remote.stop();
    await t.close();
  }
});

Deno.test("RemoteHerd: snapshot records of the wrong types are skipped; the stream, the view and the page are kept (adversarial review)", async () => {
  // Found by an adversarial review (adv15): a record in a member's RECORDS chunk was checked for
  // a text `client` only (adv12c checked those of events), so a number for `origin` was kept and
  // every /api/state and page load after it was a 500; a number for `location` threw in the
  // reader and the stream was redialled for ever.
  const t = await startSeedHerd();
  const hill = t.herd.servers.get("Hill")!;
  const good = { client: "fine", origin: "Hill", diff: "+0", location: "+1+1", time: "1" };
  const bad = [
    { client: "evil1", origin: 5, diff: "+0", location: "+1+1", time: "1" },
    { client: "evil2", origin: "Hill", diff: "+0", location: 7, time: "1" },
    { client: "evil3", origin: "Hill", diff: [], location: "+1+1", time: { a: 1 } },
    good,
  ];
  (hill as unknown as { recentRecords(): unknown[] }).recentRecords = () => [...bad].reverse();
  const remote = watcher(t.config);
  const seen: HerdEvent[] = [];
  remote.bus.subscribe((e) => seen.push(e));
  remote.start();
  const d = await serveDashboard(remote, { host: "127.0.0.1", port: 0, quiet: true });
  try {
    await waitFor(() => allWatching(remote), 5000, "all watching");
    await waitFor(
      () => remote.snapshot().records.some((r) => r.client === "fine"),
      5000,
      "the good record",
    );
    const ups = () => seen.filter((e) => e.kind === "server.up" && e.server === "Hill").length;
    await new Promise((r) => setTimeout(r, 300)); // a redial would show as another server.up
    assert.equal(ups(), 1, "Hill's stream was redialled");
    assert.ok(!remote.snapshot().records.some((r) => r.client.startsWith("evil")));
    for (const path of ["/api/state", "/"]) {
      const res = await fetch(`${d.url}${path}`);
      const body = await res.text();
      assert.equal(res.status, 200, `${path}: ${body.slice(0, 200)}`);
    }
  } finally {
    await d.close();
    await remote.stop();
    await t.close();
  }
});

Deno.test("RemoteHerd: a Places provider's name from a member is shown only when it is a name (adversarial review)", async () => {
  // Found by an adversarial review (adv15): STATE's `places` (and a WHATSAT event's `provider`)
  // was shown whatever its length: 200 KB in every snapshot, /api/state and page.
  const t = await startSeedHerd();
  const hill = t.herd.servers.get("Hill")!;
  Object.defineProperty(hill, "places", { value: "p".repeat(200_000) });
  await watching(t, async ({ remote, seen }) => {
    assert.ok(remote.snapshot().places.length <= 64, `${remote.snapshot().places.length}`);
    const whatsat = (provider: string) => ({
      kind: "whatsat",
      t: Date.now(),
      server: "Hill",
      client: "c",
      radiusKm: 1,
      bound: 1,
      provider,
      status: "OK",
      count: 0,
      latencyMs: 1,
      coalesced: false,
    });
    hill.bus.emit(whatsat("q".repeat(200_000)) as unknown as HerdEvent);
    hill.bus.emit(whatsat("legacy") as unknown as HerdEvent);
    await waitFor(() => remote.snapshot().places === "legacy", 5000, "the provider's name");
    hill.bus.emit(whatsat("q".repeat(200_000)) as unknown as HerdEvent);
    hill.bus.emit({ kind: "server.up", t: Date.now(), server: "Hill", host: "x", port: 1 });
    await waitFor(
      () => seen.some((e) => e.kind === "server.up" && e.host === "x"),
      5000,
      "the event after",
    );
    assert.equal(remote.snapshot().places, "legacy");
  });
});

Deno.test("RemoteHerd: the client IDs kept to count a server's records are bounded, however many a member sends (adversarial review)", async () => {
  // Found by an adversarial review (adv15): every client of a RECORDS line (at any time, not
  // only in the snapshot) or of a location event without `held` went into a set per server,
  // never trimmed: a member sending them without end grew the dashboard's heap without bound.
  const t = await startSeedHerd();
  const hill = t.herd.servers.get("Hill")!;
  const many = MAX_KNOWN_CLIENTS + 5_000;
  const records = Array.from({ length: many }, (_, i) => ({
    client: `k${i}`,
    origin: "Hill",
    diff: "+0",
    location: "+1+1",
    time: `${i}`,
  }));
  (hill as unknown as { recentRecords(): unknown[] }).recentRecords = () => records;
  await watching(t, async ({ remote }) => {
    // The snapshot's last record (the newest) arrives last.
    await waitFor(
      () => remote.snapshot().records.some((r) => r.client === "k0"),
      10_000,
      "the whole snapshot",
    );
    assert.ok(
      remote.knownClients("Hill") <= MAX_KNOWN_CLIENTS,
      `${remote.knownClients("Hill")} client IDs kept`,
    );
    assert.equal(remote.status().Hill.status, "watching");
  }, 10_000);
});

Deno.test("RemoteHerd: the dashboard's client index holds a bounded copy of what members send (adversarial review)", async () => {
  // Found by an adversarial review (adv15): the index of a remote view kept every record of
  // every stream whole, bounded by nothing (a server's own records are bounded by its record
  // budget; the dashboard's copy of them all, or a member's made-up ones, were not): 3,000
  // location events of 60 KB took +184 MB of the dashboard's heap, and any number more.
  const t = await startSeedHerd();
  const remote = watcher(t.config);
  const maxBytes = 1024 * 1024;
  const index = new ClientIndex(remote, remote.bus, { maxBytes });
  const seen: HerdEvent[] = [];
  remote.bus.subscribe((e) => seen.push(e));
  try {
    remote.start();
    await waitFor(() => allWatching(remote), 5000, "all watching");
    const hill = t.herd.servers.get("Hill")!;
    const fat = "+1.0" + "0".repeat(60_000) + "+1";
    const accepted = (client: string, location: string, time: string) => ({
      kind: "location.accepted",
      t: Date.now(),
      server: "Hill",
      from: null,
      lat: 1,
      lng: 1,
      record: { client, origin: "Hill", diff: "+0", location, time },
    });
    hill.bus.emit(accepted("early", "+1+1", "1") as unknown as HerdEvent);
    for (let i = 0; i < 60; i++) {
      hill.bus.emit(accepted(`fat${i}`, fat, "1") as unknown as HerdEvent);
    }
    // A client known before the bound was reached still moves.
    hill.bus.emit(accepted("early", "+2+2", "2") as unknown as HerdEvent);
    await waitFor(
      () => seen.some((e) => e.kind === "location.accepted" && e.record.time === "2"),
      5000,
      "the last event",
    );
    assert.ok(index.size < 20, `${index.size} clients indexed within ${maxBytes} bytes`);
    assert.equal(index.get("early")?.location, "+2+2");
    assert.equal(index.exact, false);
  } finally {
    index.close();
    await remote.stop();
    await t.close();
  }
});

Deno.test("RemoteHerd: a STATE naming a server many times shows it once (adversarial review)", async () => {
  // Found by an adversarial review (adv15): a STATE's links and neighbours were filtered to the
  // config's servers but not deduplicated: 10,000 copies of one name were 10,000 links in every
  // snapshot, /api/state and page.
  const t = await startSeedHerd();
  const hill = t.herd.servers.get("Hill")!;
  const real = hill.state.bind(hill);
  (hill as unknown as { state(): unknown }).state = () => ({
    ...real(),
    neighbors: Array(10_000).fill("Jaquez"),
    links: Array(10_000).fill({ peer: "Jaquez", up: true }),
  });
  await watching(t, ({ remote }) => {
    const s = remote.snapshot().servers.find((x) => x.name === "Hill")!;
    assert.deepEqual(s.neighbors, ["Jaquez"]);
    assert.deepEqual(s.links.map((l) => l.peer), ["Jaquez"]);
  });
});
