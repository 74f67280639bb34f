/**
 * The dashboard over real HTTP on 127.0.0.1:0: the event stream's framing (ids, resume,
 * coalescing, heartbeats, gaps), /api/state, /metrics, the page, static files, and the control
 * endpoints with their Origin and token checks. The herd is a fake on a real EventBus (and, for
 * the console, the demo herd's toy TCP servers).
 */

import assert from "node:assert/strict";
import { EventBus, type HerdEvent } from "../servers/events.ts";
import { type DashboardOptions, serveDashboard, type ServedDashboard } from "../dashboard/app.ts";
import { DemoHerd } from "../dashboard/dev/demo_herd.ts";
import { rawRequest } from "./_helpers/http_raw.ts";
import { waitFor } from "./_helpers/net.ts";
import type { HerdSnapshot, HerdView } from "../dashboard/types.ts";
import { VERSION } from "../servers/version.ts";
import { parseExposition } from "./_helpers/prom.ts";

/** A herd that is only a bus and a fixed snapshot (plus optional control). */
class FakeHerd implements HerdView {
  readonly bus = new EventBus();
  snap: HerdSnapshot = {
    servers: [
      {
        name: "Hill",
        host: "127.0.0.1",
        port: 1,
        running: true,
        connections: 2,
        records: 1,
        neighbors: ["Jaquez"],
        links: [{ peer: "Jaquez", up: true }],
      },
      {
        name: "Jaquez",
        host: "127.0.0.1",
        port: 2,
        running: true,
        connections: 0,
        records: 1,
        neighbors: ["Hill"],
        links: [{ peer: "Hill", up: false }],
      },
    ],
    records: [{
      client: "caf\xc3\xa9</script><b>",
      origin: "Hill",
      diff: "+0.100000000",
      location: "+34.068930-118.445127",
      time: "1621464827.959498503",
      lat: 34.06893,
      lng: -118.445127,
    }],
    places: "offline",
  };
  snapshot(): HerdSnapshot {
    return this.snap;
  }
}

function accepted(server: string, client: string, t = Date.now()): HerdEvent {
  return {
    kind: "location.accepted",
    t,
    server,
    record: { origin: server, diff: "+0.000000000", client, location: "+1-2", time: "1.5" },
    from: null,
    lat: 1,
    lng: -2,
  };
}

async function serve(
  herd: HerdView,
  opts: Partial<DashboardOptions> = {},
): Promise<ServedDashboard & AsyncDisposable> {
  const d = await serveDashboard(herd, {
    host: "127.0.0.1",
    port: 0,
    quiet: true,
    assets: { built: false, islands: {}, chunks: [], styleUrl: "/static/style.css" },
    ...opts,
  });
  return Object.assign(d, { [Symbol.asyncDispose]: () => d.close() });
}

interface SseMessage {
  event?: string;
  id?: string;
  data?: string;
  comment?: string;
  retry?: string;
  /** ms since the reader started. */
  at: number;
}

/** A minimal SSE reader (what EventSource does, minus reconnection). */
class SseReader {
  readonly messages: SseMessage[] = [];
  readonly #reader: ReadableStreamDefaultReader<string>;
  #buf = "";
  #started = performance.now();
  #done: Promise<void>;
  ended = false;
  constructor(readonly res: Response) {
    this.#reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    this.#done = this.#pump();
  }
  async #pump(): Promise<void> {
    try {
      while (true) {
        const { value, done } = await this.#reader.read();
        if (done) break;
        this.#buf += value;
        let i: number;
        while ((i = this.#buf.indexOf("\n\n")) >= 0) {
          const block = this.#buf.slice(0, i);
          this.#buf = this.#buf.slice(i + 2);
          const m: SseMessage = { at: performance.now() - this.#started };
          const data: string[] = [];
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) m.comment = line.slice(1).trim();
            else {
              const c = line.indexOf(":");
              const k = line.slice(0, c);
              const v = line.slice(c + 1).replace(/^ /, "");
              if (k === "data") data.push(v);
              else if (k === "event" || k === "id" || k === "retry") m[k] = v;
            }
          }
          if (data.length) m.data = data.join("\n");
          this.messages.push(m);
        }
      }
    } catch { /* cancelled */ }
    this.ended = true;
  }
  /** Event objects from all data frames so far, in order. */
  events(): { id: number; kind: string; server: string; [k: string]: unknown }[] {
    return this.messages.filter((m) => !m.event && m.data).flatMap((m) => JSON.parse(m.data!));
  }
  frames(): SseMessage[] {
    return this.messages.filter((m) => !m.event && m.data);
  }
  async waitFor(cond: (r: SseReader) => boolean, ms = 3000, what = "condition"): Promise<void> {
    const end = Date.now() + ms;
    while (!cond(this)) {
      if (Date.now() > end) throw new Error(`SSE: timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  async close(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
    await this.#done;
  }
}

async function openEvents(
  base: string,
  headers: Record<string, string> = {},
  query = "",
): Promise<SseReader> {
  const res = await fetch(`${base}/api/events${query}`, { headers });
  assert.deepEqual(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
  const r = new SseReader(res);
  await r.waitFor((x) => x.messages.some((m) => m.event === "hello"), 3000, "hello");
  return r;
}

const sse = { sanitizeOps: false, sanitizeResources: false };

Deno.test("GET /api/state returns the snapshot with display text", async () => {
  const herd = new FakeHerd();
  await using d = await serve(herd);
  const res = await fetch(`${d.url}/api/state`);
  assert.deepEqual(res.status, 200);
  const s = await res.json();
  assert.deepEqual(s.places, "offline");
  assert.deepEqual(s.servers.map((x: { name: string }) => x.name), ["Hill", "Jaquez"]);
  assert.deepEqual(s.records[0].client, "café</script><b>");
  assert.deepEqual(s.servers[0].links, [{ peer: "Jaquez", up: true }]);
  const slim = await (await fetch(`${d.url}/api/state?records=0`)).json();
  assert.deepEqual(slim.records, []);
  assert.deepEqual(slim.servers.length, 2);
});

Deno.test({
  name: "GET /api/events: hello, then coalesced frames with ids; chatty kinds left out",
  ...sse,
  async fn() {
    const herd = new FakeHerd();
    // Frames big enough for the burst: this checks coalescing; the default cap is tested below.
    await using d = await serve(herd, { hub: { maxFrame: 1000 } });
    const r = await openEvents(d.url);
    const hello = JSON.parse(r.messages.find((m) => m.event === "hello")!.data!);
    assert.deepEqual(hello.resumeFrom, null);
    assert.deepEqual(r.messages[0].retry, "1000");
    // A burst of 500 events (plus chatty ones) arrives as one frame, not 500.
    for (let i = 0; i < 500; i++) {
      herd.bus.emit(accepted("Hill", `c${i}`));
      herd.bus.emit({ kind: "line.in", t: Date.now(), server: "Hill", conn: 1, line: "IAMAT x" });
      herd.bus.emit({
        kind: "reply.out",
        t: Date.now(),
        server: "Hill",
        conn: 1,
        reply: "AT x\n",
      });
    }
    await r.waitFor((x) => x.events().length >= 500, 3000, "500 events");
    const evs = r.events();
    assert.deepEqual(evs.length, 500);
    assert.ok(r.frames().length <= 2, `expected 1-2 frames, got ${r.frames().length}`);
    assert.deepEqual(evs.map((e) => e.id), Array.from({ length: 500 }, (_, i) => i + 1));
    assert.ok(evs.every((e) => e.kind === "location.accepted"));
    const last = r.frames().at(-1)!;
    assert.deepEqual(last.id, "500");
    // Display text: the client field of the record is converted.
    herd.bus.emit(accepted("Hill", "caf\xc3\xa9"));
    await r.waitFor((x) => x.events().length === 501, 3000, "event 501");
    assert.deepEqual((r.events()[500].record as { client: string }).client, "café");
    await r.close();
  },
});

Deno.test({
  name: "GET /api/events: a burst beyond the default frame cap skips ahead with a gap notice",
  ...sse,
  async fn() {
    const herd = new FakeHerd();
    await using d = await serve(herd);
    const r = await openEvents(d.url);
    for (let i = 0; i < 500; i++) herd.bus.emit(accepted("Hill", `b${i}`));
    await r.waitFor((x) => x.events().some((e) => e.id === 500), 3000, "event 500");
    const gap = r.messages.find((m) => m.event === "gap");
    assert.ok(gap !== undefined, "a gap notice");
    assert.deepEqual(JSON.parse(gap.data!), { from: 1, to: 200 });
    assert.deepEqual(r.events().map((e) => e.id), Array.from({ length: 300 }, (_, i) => i + 201));
    await r.close();
  },
});

Deno.test({
  name: "GET /api/events: a steady high rate gives at most ~10 frames a second",
  ...sse,
  async fn() {
    const herd = new FakeHerd();
    // Frames big enough for this rate (~600 events a tick): this checks coalescing, not the cap.
    await using d = await serve(herd, { hub: { maxFrame: 2000 } });
    const r = await openEvents(d.url);
    const start = Date.now();
    let n = 0;
    while (Date.now() - start < 1000) {
      for (let i = 0; i < 20; i++) herd.bus.emit(accepted("Hill", `c${n++}`));
      await new Promise((res) => setTimeout(res, 2));
    }
    await r.waitFor((x) => x.events().length === n, 3000, `all ${n} events`);
    const frames = r.frames();
    assert.ok(frames.length <= 13, `${frames.length} frames for ~1 s of events`);
    assert.ok(frames.length >= 5, `only ${frames.length} frames: not flushing every 100 ms?`);
    // Each frame holds an array and carries the id of its last event.
    for (const f of frames) {
      const arr = JSON.parse(f.data!);
      assert.deepEqual(String(arr.at(-1).id), f.id);
    }
    await r.close();
  },
});

Deno.test({
  name: "GET /api/events: Last-Event-ID resumes without loss or duplicates; ?after= too",
  ...sse,
  async fn() {
    const herd = new FakeHerd();
    await using d = await serve(herd);
    const r1 = await openEvents(d.url);
    for (let i = 0; i < 30; i++) herd.bus.emit(accepted("Hill", `a${i}`));
    await r1.waitFor((x) => x.events().length === 30, 3000, "30 events");
    const lastId = r1.frames().at(-1)!.id!;
    await r1.close();
    // While disconnected the herd goes on.
    for (let i = 0; i < 20; i++) herd.bus.emit(accepted("Jaquez", `b${i}`));
    const r2 = await openEvents(d.url, { "Last-Event-ID": lastId });
    const hello = JSON.parse(r2.messages.find((m) => m.event === "hello")!.data!);
    assert.deepEqual(hello.resumeFrom, 30);
    for (let i = 0; i < 5; i++) herd.bus.emit(accepted("Hill", `c${i}`));
    await r2.waitFor((x) => x.events().length === 25, 3000, "25 events");
    assert.deepEqual(r2.events().map((e) => e.id), Array.from({ length: 25 }, (_, i) => 31 + i));
    await r2.close();
    // ?after= (what the page uses on its first connect); the header wins over it.
    const r3 = await openEvents(d.url, {}, "?after=50");
    for (let i = 0; i < 2; i++) herd.bus.emit(accepted("Hill", `d${i}`));
    await r3.waitFor((x) => x.events().length >= 7, 3000, "7 events");
    assert.deepEqual(r3.events()[0].id, 51);
    await r3.close();
    const r4 = await openEvents(d.url, { "Last-Event-ID": "55" }, "?after=1");
    herd.bus.emit(accepted("Hill", "e"));
    await r4.waitFor((x) => x.events().length >= 2, 3000, "2 events");
    assert.deepEqual(r4.events().map((e) => e.id), [56, 57]);
    await r4.close();
  },
});

Deno.test({
  name: "GET /api/events: a resume older than the ring gets a gap notice, then the rest",
  ...sse,
  async fn() {
    const herd = new FakeHerd();
    await using d = await serve(herd, { hub: { capacity: 50 } });
    for (let i = 0; i < 200; i++) herd.bus.emit(accepted("Hill", `c${i}`));
    const r = await openEvents(d.url, { "Last-Event-ID": "10" });
    await r.waitFor((x) => x.events().length === 50, 3000, "the 50 kept events");
    const gap = r.messages.find((m) => m.event === "gap")!;
    assert.deepEqual(JSON.parse(gap.data!), { from: 11, to: 150 });
    assert.deepEqual(gap.id, "150");
    assert.deepEqual(r.events()[0].id, 151);
    assert.deepEqual(r.events().at(-1)!.id, 200);
    await r.close();
  },
});

Deno.test({
  name: "GET /api/events: heartbeat comments when idle",
  ...sse,
  async fn() {
    const herd = new FakeHerd();
    await using d = await serve(herd, { hub: { heartbeatMs: 150 } });
    const r = await openEvents(d.url);
    await r.waitFor(
      (x) => x.messages.filter((m) => m.comment?.startsWith("heartbeat")).length >= 2,
      3000,
      "2 heartbeats",
    );
    await r.close();
  },
});

Deno.test({
  name: "GET /api/events: default heartbeat period is 15 s",
  async fn() {
    const src = await Deno.readTextFile(new URL("../dashboard/hub.ts", import.meta.url));
    assert.match(src, /opts\.heartbeatMs \?\? 15_000/);
  },
});

Deno.test({
  name: "GET /metrics: Prometheus text format with counters, gauges and histograms",
  async fn() {
    const herd = new FakeHerd();
    await using d = await serve(herd);
    const t = Date.now();
    herd.bus.emit(accepted("Hill", "a"));
    herd.bus.emit({ ...accepted("Jaquez", "a"), from: "Hill" } as HerdEvent);
    herd.bus.emit({
      kind: "location.dropped",
      t,
      server: "Jaquez",
      record: { origin: "Hill", diff: "+0", client: "a", location: "+1-2", time: "1" },
      from: "Hill",
      reason: "duplicate",
    });
    herd.bus.emit({
      kind: "propagation.sent",
      t,
      server: "Hill",
      to: "Jaquez",
      records: [{ origin: "Hill", diff: "+0", client: "a", location: "+1-2", time: "1" }, {
        origin: "Hill",
        diff: "+0",
        client: "b",
        location: "+1-2",
        time: "1",
      }],
    });
    herd.bus.emit({ kind: "client.connect", t, server: "Hill", conn: 7, remote: "127.0.0.1:5" });
    herd.bus.emit({
      kind: "whatsat",
      t: t + 20,
      server: "Hill",
      client: "a",
      radiusKm: 10,
      bound: 5,
      provider: "offline",
      status: "OK",
      count: 3,
      latencyMs: 20,
      coalesced: false,
    });
    // The server times each command itself (line to reply ready): a WHATSAT of 30 ms, an IAMAT.
    const command = (verb: "IAMAT" | "WHATSAT", seconds: number): HerdEvent => ({
      kind: "command",
      t,
      server: "Hill",
      conn: 7,
      verb,
      result: "ok",
      reason: "",
      seconds,
    });
    herd.bus.emit(command("WHATSAT", 0.03));
    herd.bus.emit(command("IAMAT", 0.001));
    const res = await fetch(`${d.url}/metrics`);
    assert.deepEqual(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    assert.ok(text.endsWith("\n"));
    // A Prometheus text parser takes all of it; every sample belongs to a typed family.
    const m = parseExposition(text);
    assert.equal(m.types.get("herd_updates_accepted_total"), "COUNTER");
    assert.equal(m.types.get("herd_whatsat_duration_seconds"), "HISTOGRAM");
    assert.equal(m.types.get("herd_client_connections"), "GAUGE");
    assert.equal(m.value("herd_updates_accepted_total", { server: "Hill", from: "client" }), 1);
    assert.equal(m.value("herd_updates_accepted_total", { server: "Jaquez", from: "Hill" }), 1);
    assert.equal(
      m.value("herd_updates_dropped_total", {
        server: "Jaquez",
        from: "Hill",
        reason: "duplicate",
      }),
      1,
    );
    assert.equal(m.value("herd_updates_propagated_total", { server: "Hill", peer: "Jaquez" }), 2);
    // Renamed from herd_connections (a gauge beside the counter herd_client_connections_total).
    assert.equal(m.value("herd_client_connections", { server: "Hill" }), 2);
    assert.equal(m.value("herd_connections", { server: "Hill" }), undefined);
    assert.equal(m.value("herd_link_up", { server: "Hill", peer: "Jaquez" }), 1);
    assert.equal(m.value("herd_link_up", { server: "Jaquez", peer: "Hill" }), 0);
    assert.equal(
      m.value("herd_places_requests_total", { server: "Hill", provider: "offline", status: "OK" }),
      1,
    );
    // WHATSAT took 30 ms: in the 0.05 bucket, not the 0.025 one; the IAMAT is timed apart.
    const bucket = (le: string) =>
      m.value("herd_whatsat_duration_seconds_bucket", { server: "Hill", le });
    assert.equal(bucket("0.025"), 0);
    assert.equal(bucket("0.05"), 1);
    assert.equal(bucket("+Inf"), 1);
    assert.equal(m.value("herd_whatsat_duration_seconds_count", { server: "Hill" }), 1);
    assert.equal(m.value("herd_iamat_duration_seconds_count", { server: "Hill" }), 1);
    assert.equal(
      m.value("herd_places_duration_seconds_sum", { server: "Hill", provider: "offline" }),
      0.02,
    );
    assert.equal(m.value("herd_dashboard_subscribers"), 0);
    // Known series start at 0.
    assert.equal(m.value("herd_client_refused_total", { server: "Jaquez", reason: "other" }), 0);
    assert.equal(m.value("herd_errors_total", { server: "Hill", reason: "disk-write" }), 0);
    assert.equal(
      m.value("herd_commands_total", {
        server: "Hill",
        verb: "IAMAT",
        result: "invalid",
        reason: "bad-location",
      }),
      0,
    );
    assert.equal(m.value("herd_build_info", { version: VERSION }), 1);
    // Buckets are cumulative.
    const buckets = m.all("herd_places_duration_seconds_bucket").map((s) => s.value);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i] >= buckets[i - 1]);
  },
});

Deno.test("GET /: the first HTML shows the current state, initial JSON escaped", async () => {
  const herd = new FakeHerd();
  const d = await serve(herd);
  herd.bus.emit({
    kind: "whatsat",
    t: Date.now(),
    server: "Hill",
    client: "caf\xc3\xa9</script><b>",
    radiusKm: 10,
    bound: 5,
    provider: "offline",
    status: "OK",
    count: 3,
    latencyMs: 4,
    coalesced: false,
  });
  try {
    const res = await fetch(`${d.url}/`);
    assert.deepEqual(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/html/);
    assert.match(res.headers.get("content-security-policy")!, /script-src 'self'/);
    const html = await res.text();
    assert.ok(html.startsWith("<!DOCTYPE html>"));
    // Server-rendered state: servers, their links, the client on the map, the Places row.
    assert.match(html, /data-server-row="Hill"/);
    assert.match(html, /data-link="Hill-Jaquez"/);
    assert.match(html, /data-state="half"/);
    assert.match(html, /data-client="café&lt;\/script>&lt;b>"/);
    assert.match(html, /data-places-row="café&lt;\/script>&lt;b>"/);
    // The embedded JSON cannot close its script element.
    const m = /<script id="herd-initial" type="application\/json">(.*?)<\/script>/s.exec(html);
    assert.ok(m, "initial data script");
    assert.ok(!m[1].includes("<"), "raw < in the initial JSON");
    const init = JSON.parse(m[1]);
    assert.deepEqual(init.snapshot.records[0].client, "café</script><b>");
    assert.deepEqual(init.canControl, false);
    assert.deepEqual(init.tokenRequired, false);
    // Unbuilt islands: the page says so.
    assert.match(html, /deno task build/);
  } finally {
    await d.close();
  }
});

Deno.test("GET /: the token never reaches the page", async () => {
  const herd = new FakeHerd();
  await using d = await serve(herd, { token: "s3cr3t-token-value" });
  const html = await (await fetch(`${d.url}/`)).text();
  assert.ok(!html.includes("s3cr3t-token-value"));
  const state = await (await fetch(`${d.url}/api/state`)).text();
  assert.ok(!state.includes("s3cr3t-token-value"));
  const init = JSON.parse(
    /<script id="herd-initial" type="application\/json">(.*?)<\/script>/s.exec(html)![1],
  );
  assert.deepEqual(init.tokenRequired, true);
});

Deno.test("GET /api/world and /static: the offline map data and files, no traversal", async () => {
  await using d = await serve(new FakeHerd());
  const world = await (await fetch(`${d.url}/api/world`)).json();
  assert.deepEqual(world.type, "Topology");
  assert.ok(world.objects.countries);
  const css = await fetch(`${d.url}/static/style.css`);
  assert.deepEqual(css.status, 200);
  assert.match(css.headers.get("content-type")!, /^text\/css/);
  assert.match(await css.text(), /prefers-color-scheme: dark/);
  for (
    const p of [
      "/static/../../deno.json",
      "/static/%2e%2e/%2e%2e/deno.json",
      "/static/build/../../../deno.json",
      "/static/",
    ]
  ) {
    const r = await fetch(`${d.url}${p}`);
    assert.ok(r.status === 404, `${p}: ${r.status}`);
    await r.body?.cancel();
  }
  const nf = await fetch(`${d.url}/api/nope`);
  assert.deepEqual(nf.status, 404);
  assert.match((await nf.json()).error, /no route/);
});

async function post(
  base: string,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
) {
  const res = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", origin: base, ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text);
  } catch { /* not JSON */ }
  return { status: res.status, json, text };
}

Deno.test("control: Origin must be the dashboard's own; errors are JSON", async () => {
  const herd = new DemoHerd();
  await herd.start();
  const d = await serve(herd);
  try {
    const port = new URL(d.url).port;
    const noOrigin = await fetch(`${d.url}/api/servers/Hill/stop`, { method: "POST" });
    assert.deepEqual(noOrigin.status, 403);
    assert.match((await noOrigin.json()).error, /Origin/);
    for (
      const origin of [
        "http://evil.example",
        `http://127.0.0.1:${Number(port) + 1}`,
        "null",
        `https://127.0.0.1:${port}`,
      ]
    ) {
      const r = await post(d.url, "/api/servers/Hill/stop", {}, { origin });
      assert.deepEqual(r.status, 403, origin);
      assert.ok(typeof r.json.error === "string");
    }
    assert.deepEqual(herd.snapshot().servers[0].running, true);
    // Every loopback spelling of our own origin is ours.
    const ok = await post(d.url, "/api/servers/Hill/stop", {}, {
      origin: `http://localhost:${port}`,
    });
    assert.deepEqual(ok.status, 200, ok.text);
    assert.deepEqual(herd.snapshot().servers[0].running, false);
    const ok2 = await post(d.url, "/api/servers/Hill/start", {});
    assert.deepEqual(ok2.status, 200, ok2.text);
    assert.deepEqual((ok2.json.server as { running: boolean }).running, true);
    // GETs are not control requests.
    assert.deepEqual(
      await fetch(`${d.url}/api/state`, { headers: { origin: "http://evil.example" } }).then(
        (r) => {
          r.body?.cancel();
          return r.status;
        },
      ),
      200,
    );
  } finally {
    await d.close();
    await herd.stop();
  }
});

Deno.test("control: a token, when in force, is required and checked", async () => {
  const herd = new DemoHerd();
  await herd.start();
  const d = await serve(herd, { token: "tok-123" });
  try {
    assert.deepEqual(d.token, "tok-123");
    assert.match(d.openUrl, /\?token=tok-123/);
    const none = await post(d.url, "/api/servers/Hill/stop", {});
    assert.deepEqual(none.status, 401);
    const bad = await post(d.url, "/api/servers/Hill/stop", {}, { authorization: "Bearer nope" });
    assert.deepEqual(bad.status, 401);
    assert.deepEqual(bad.json.error, "bad token");
    // The token does not excuse a foreign origin.
    const foreign = await post(d.url, "/api/servers/Hill/stop", {}, {
      authorization: "Bearer tok-123",
      origin: "http://evil.example",
    });
    assert.deepEqual(foreign.status, 403);
    const good = await post(d.url, "/api/servers/Hill/stop", {}, {
      authorization: "Bearer tok-123",
    });
    assert.deepEqual(good.status, 200, good.text);
    const alt = await post(d.url, "/api/servers/Hill/start", {}, { "x-herd-token": "tok-123" });
    assert.deepEqual(alt.status, 200, alt.text);
  } finally {
    await d.close();
    await herd.stop();
  }
});

Deno.test("control: stop/start 404 and 409 cases", async () => {
  const herd = new DemoHerd();
  await herd.start();
  const d = await serve(herd);
  const remote = new FakeHerd();
  const d2 = await serve(remote);
  try {
    assert.deepEqual((await post(d.url, "/api/servers/Nobody/stop", {})).status, 404);
    assert.deepEqual((await post(d.url, "/api/servers/Hill/explode", {})).status, 404);
    assert.deepEqual((await post(d.url, "/api/servers/Hill/start", {})).status, 409);
    assert.deepEqual((await post(d.url, "/api/servers/Hill/stop", {})).status, 200);
    const again = await post(d.url, "/api/servers/Hill/stop", {});
    assert.deepEqual(again.status, 409);
    assert.match(String(again.json.error), /already stopped/);
    // A remote herd has no stop/start.
    const r = await post(d2.url, "/api/servers/Hill/stop", {});
    assert.deepEqual(r.status, 409);
    assert.match(String(r.json.error), /remote/);
  } finally {
    await d.close();
    await d2.close();
    await herd.stop();
  }
});

Deno.test("POST /api/command: one command over real TCP, the raw reply", async () => {
  const herd = new DemoHerd({ tcp: true });
  await herd.start();
  const d = await serve(herd, { commandTimeoutMs: 3000 });
  try {
    const at = await post(d.url, "/api/command", {
      server: "Smith",
      line: "IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503",
    });
    assert.deepEqual(at.status, 200, at.text);
    assert.deepEqual(
      at.json.reply,
      "AT Smith +0.000000000 kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503\n",
    );
    assert.ok(typeof at.json.ms === "number");
    const ws = await post(d.url, "/api/command", {
      server: "Smith",
      line: "WHATSAT kiwi.cs.ucla.edu 10 5",
    });
    assert.deepEqual(ws.status, 200, ws.text);
    const reply = String(ws.json.reply);
    assert.ok(reply.startsWith("AT Smith "), reply);
    assert.ok(reply.endsWith("}\n\n"), JSON.stringify(reply));
    const bad = await post(d.url, "/api/command", {
      server: "Smith",
      line: "WHATSAT kiwi.cs.ucla.edu 1- 5",
    });
    assert.deepEqual(bad.json.reply, "? WHATSAT kiwi.cs.ucla.edu 1- 5\n");
    // Bad requests.
    assert.deepEqual(
      (await post(d.url, "/api/command", { server: "Nobody", line: "X" })).status,
      404,
    );
    assert.deepEqual(
      (await post(d.url, "/api/command", { server: "Smith", line: "   " })).status,
      400,
    );
    assert.deepEqual(
      (await post(d.url, "/api/command", { server: "Smith", line: "A\nB" })).status,
      400,
    );
    // What JavaScript's trim() drops but the protocol does not call whitespace is a command:
    // the server answers it (adversarial review: NBSP, U+3000, U+FEFF got "empty command").
    for (const line of ["\u00a0", "\u3000", "\ufeff"]) {
      const r = await post(d.url, "/api/command", { server: "Smith", line });
      assert.deepEqual([r.status, r.json.reply], [200, `? ${line}\n`], JSON.stringify(line));
    }
    assert.deepEqual((await post(d.url, "/api/command", "{not json")).status, 400);
    assert.deepEqual((await post(d.url, "/api/command", { server: 1, line: "X" })).status, 400);
    await herd.stopServer("Smith");
    const stopped = await post(d.url, "/api/command", { server: "Smith", line: "IAMAT a +1+2 3" });
    assert.deepEqual(stopped.status, 409);
    // Origin is checked here too.
    assert.deepEqual(
      (await post(d.url, "/api/command", { server: "Hill", line: "X" }, {
        origin: "http://evil.example",
      })).status,
      403,
    );
  } finally {
    await d.close();
    await herd.stop();
  }
});

Deno.test("POST /api/command: a server that never answers is bounded by the timeout", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  (async () => {
    for await (const c of listener) held.push(c);
  })().catch(() => {});
  const herd = new FakeHerd();
  herd.snap.servers[0].port = (listener.addr as Deno.NetAddr).port;
  const d = await serve(herd, { commandTimeoutMs: 300 });
  try {
    const t0 = Date.now();
    const r = await post(d.url, "/api/command", { server: "Hill", line: "IAMAT a +1+2 3" });
    assert.ok(Date.now() - t0 < 2000);
    assert.deepEqual(r.status, 502);
    assert.match(String(r.json.error), /timed out/);
    herd.snap.servers[1].port = 1; // nothing listens on port 1
    const refused = await post(d.url, "/api/command", { server: "Jaquez", line: "IAMAT a +1+2 3" });
    assert.deepEqual(refused.status, 502);
    assert.match(String(refused.json.error), /connect failed/);
  } finally {
    await d.close();
    listener.close();
    for (const c of held) c.close();
  }
});

/** Gunzips a binary string (one char per byte) into a binary string. */
async function gunzip(binary: string): Promise<string> {
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  const out = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  const plain = new Uint8Array(await new Response(out).arrayBuffer());
  return Array.from(plain, (b) => String.fromCharCode(b)).join("");
}

Deno.test("compression and ETags: gzip on request, 304 on If-None-Match; JSON, page, static", async () => {
  const d = await serve(new FakeHerd());
  const p = Number(new URL(d.url).port);
  // The page and /api/state carry live series (one column a second): a round whose content moved
  // on between its first and last request says nothing about gzip or ETags, so it is run again.
  const round = async (target: string, type: RegExp): Promise<boolean> => {
    const plain = await rawRequest(p, target);
    assert.deepEqual(plain.status, 200, target);
    assert.deepEqual(
      plain.headers["content-encoding"],
      undefined,
      `${target} compressed unasked`,
    );
    const tag = plain.headers["etag"];
    assert.match(tag ?? "", /^"[0-9a-f]+"$/, `${target}: no ETag`);
    const zipped = await rawRequest(p, target, { headers: ["Accept-Encoding: gzip"] });
    const again = [];
    for (const sent of [tag, `W/${tag}`]) {
      again.push(
        await rawRequest(p, target, {
          headers: [`If-None-Match: ${sent}`, "Accept-Encoding: gzip"],
        }),
      );
    }
    const after = await rawRequest(p, target);
    if (after.headers["etag"] !== tag) return false;
    assert.deepEqual(zipped.headers["content-encoding"], "gzip", target);
    assert.match(zipped.headers["content-type"], type);
    assert.match(zipped.headers["vary"] ?? "", new RegExp(RegExp.escape("Accept-Encoding")));
    const body = await gunzip(zipped.body);
    assert.deepEqual(body, plain.body, `${target}: gzip of another body`);
    assert.ok(zipped.body.length < plain.body.length, `${target}: gzip is not smaller`);
    // The ETag names the content (whatever its encoding): a revalidation gets a 304.
    assert.deepEqual(zipped.headers["etag"], `W/${tag}`);
    for (const [i, sent] of [tag, `W/${tag}`].entries()) {
      assert.deepEqual(again[i].status, 304, `${target} If-None-Match ${sent}`);
      assert.deepEqual(again[i].body, "");
    }
    const changed = await rawRequest(p, target, { headers: ['If-None-Match: "other"'] });
    assert.deepEqual(changed.status, 200);
    return true;
  };
  try {
    for (
      const [target, type] of [
        ["/api/world", /^application\/json/],
        ["/api/state", /^application\/json/],
        ["/static/style.css", /^text\/css/],
        ["/", /^text\/html/],
      ] as const
    ) {
      let done = false;
      for (let tries = 0; !done && tries < 10; tries++) done = await round(target, type);
      assert.ok(done, `${target}: its content changed in each of 10 rounds`);
    }
  } finally {
    await d.close();
  }
});

Deno.test({
  name: "compression: the event stream is neither compressed nor held back",
  ...sse,
  async fn() {
    const herd = new FakeHerd();
    const d = await serve(herd);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(d.url).port) });
    try {
      const req = `GET /api/events HTTP/1.1\r\nHost: ${new URL(d.url).host}\r\n` +
        "Accept-Encoding: gzip, deflate\r\nIf-None-Match: *\r\n\r\n";
      await conn.write(new TextEncoder().encode(req));
      let text = "";
      const buf = new Uint8Array(16384);
      const deadline = Date.now() + 10_000;
      const readUntil = async (what: string) => {
        while (!text.includes(what)) {
          assert.ok(Date.now() < deadline, `no ${JSON.stringify(what)} in ${JSON.stringify(text)}`);
          const timer = setTimeout(() => conn.close(), deadline - Date.now());
          const n = await conn.read(buf).finally(() => clearTimeout(timer));
          if (n === null) break;
          text += new TextDecoder().decode(buf.subarray(0, n));
        }
      };
      await readUntil("event: hello");
      const head = text.slice(0, text.indexOf("\r\n\r\n")).toLowerCase();
      assert.match(head, /^http\/1\.1 200/);
      assert.match(head, new RegExp(RegExp.escape("content-type: text/event-stream")));
      assert.ok(!head.includes("content-encoding"), head);
      assert.ok(!head.includes("etag"), head);
      assert.match(head, new RegExp(RegExp.escape("no-transform")));
      // One small event arrives on its own, as plain text: nothing buffers it.
      herd.bus.emit(accepted("Hill", "plain.sse.client"));
      await readUntil("plain.sse.client");
    } finally {
      conn.close();
      await d.close();
    }
  },
});

Deno.test("links: a remote herd shows the link control unavailable, and POST says why (409)", async () => {
  const d = await serve(new FakeHerd());
  try {
    const html = await (await fetch(`${d.url}/`)).text();
    assert.match(html, new RegExp(RegExp.escape('data-testid="links-unavailable"')));
    assert.match(html, new RegExp(RegExp.escape("unavailable on a remote herd")));
    const res = await fetch(`${d.url}/api/links/Hill/Jaquez`, {
      method: "POST",
      headers: { origin: d.url, "content-type": "application/json" },
      body: '{"cut":true}',
    });
    assert.deepEqual(res.status, 409);
    assert.match((await res.json()).error, /remote/);
  } finally {
    await d.close();
  }
});

Deno.test("methods: HEAD claims no length its GET does not have: the same length, or none where the GET is compressed or streamed", async () => {
  const herd = new DemoHerd();
  await herd.start();
  const d = await serve(herd);
  const port = Number(new URL(d.url).port);
  try {
    for (const path of ["/", "/api/state", "/healthz", "/static/style.css"]) {
      const get = await rawRequest(port, path);
      const head = await rawRequest(port, path, { method: "HEAD" });
      assert.equal(head.status, get.status, path);
      assert.equal(head.headers["content-type"], get.headers["content-type"], path);
      assert.equal(head.body, "", path);
      assert.equal(Number(get.headers["content-length"]), get.body.length, `GET ${path}`);
      if (path === "/healthz" || path === "/static/style.css") {
        assert.equal(head.headers["content-length"], get.headers["content-length"], path);
      } else {
        assert.ok(
          Number(head.headers["content-length"]) > 0,
          `HEAD ${path}: ${head.headers["content-length"]}`,
        );
      }
      // Compressed, the GET is streamed (no length): so is the HEAD's answer.
      const gzip = ["Accept-Encoding: gzip"];
      const zipped = await rawRequest(port, path, { headers: gzip });
      const zippedHead = await rawRequest(port, path, { method: "HEAD", headers: gzip });
      assert.equal(
        zippedHead.headers["content-encoding"],
        zipped.headers["content-encoding"],
        path,
      );
      assert.equal(zippedHead.headers["content-length"], zipped.headers["content-length"], path);
    }
    // The event stream never ends: no length, in GET or HEAD.
    const events = await rawRequest(port, "/api/events");
    assert.equal(events.headers["content-length"], undefined);
    const eventsHead = await rawRequest(port, "/api/events", { method: "HEAD" });
    assert.equal(eventsHead.status, 200);
    assert.equal(
      eventsHead.headers["content-length"],
      undefined,
      "HEAD /api/events claims a length",
    );
    // And its stream is closed, not left subscribed.
    await waitFor(
      async () =>
        parseExposition((await rawRequest(port, "/metrics")).body).value(
          "herd_dashboard_subscribers",
        ) === 0,
      10_000,
      "HEAD /api/events to leave no stream open",
    );
  } finally {
    await d.close();
    await herd.stop();
  }
});

Deno.test("methods: a route's other methods get 405 with Allow, OPTIONS 204; HEAD is the GET without its body", async () => {
  const herd = new DemoHerd();
  await herd.start();
  const d = await serve(herd);
  try {
    const origin = new URL(d.url).origin;
    // With the dashboard's Origin, so the control check passes and the method is what is judged.
    const put = await fetch(`${d.url}/api/state`, { method: "PUT", headers: { origin } });
    assert.equal(put.status, 405);
    assert.equal(put.headers.get("allow"), "GET, HEAD, OPTIONS");
    assert.match((await put.json() as { error: string }).error, /PUT is not allowed/);
    const get = await fetch(`${d.url}/api/servers/Hill/stop`);
    assert.equal(get.status, 405);
    assert.equal(get.headers.get("allow"), "POST, OPTIONS");
    await get.body?.cancel();
    const options = await fetch(`${d.url}/api/command`, { method: "OPTIONS" });
    assert.equal(options.status, 204);
    assert.equal(options.headers.get("allow"), "POST, OPTIONS");
    await options.body?.cancel();
    // HEAD: the GET's status and type, no body; unknown paths stay 404.
    const head = await fetch(`${d.url}/api/state`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.match(head.headers.get("content-type") ?? "", /application\/json/);
    assert.equal(await head.text(), "");
    const none = await fetch(`${d.url}/api/nope`, { method: "PUT", headers: { origin } });
    assert.equal(none.status, 404);
    await none.body?.cancel();
    assert.equal(herd.snapshot().servers[0].running, true, "a GET never stops a server");
  } finally {
    await d.close();
    await herd.stop();
  }
});

Deno.test("GET /: a server on an IPv6 host shows its address in brackets", async () => {
  const herd = new FakeHerd();
  herd.snap.servers[0] = { ...herd.snap.servers[0], host: "::1", port: 12000 };
  herd.snap.servers[1] = { ...herd.snap.servers[1], host: "[::1]", port: 12001 };
  await using d = await serve(herd);
  const html = await (await fetch(`${d.url}/`)).text();
  const cells = [...html.matchAll(/class="mono muted col-address">([^<]*)</g)].map((m) => m[1]);
  assert.deepEqual(cells, ["[::1]:12000", "[::1]:12001"]);
});
