/**
 * The dashboard's pieces without HTTP: the hub's bounded memory and slow-subscriber handling, the
 * browser-side model (time order, applying events, the graph), security helpers, the route
 * manifest, and small formatters.
 */

import { assert, assertEquals } from "./_helpers/assert.ts";
import { EventBus, type HerdEvent } from "../servers/events.ts";
import { EventHub, parseEventId, sseBody, type SubscriberSink } from "../dashboard/hub.ts";
import { replyComplete } from "../dashboard/command.ts";
import { jsonForScript } from "../dashboard/display.ts";
import { escapeLabel, Histogram } from "../dashboard/metrics.ts";
import { routePattern, ROUTES } from "../dashboard/manifest.ts";
import { checkControl, isLoopbackHost, ownOrigins } from "../dashboard/security.ts";
import { resolveToken } from "../dashboard/app.ts";
import { DEFAULT_LINKS, DEFAULT_NAMES, DemoHerd } from "../dashboard/dev/demo_herd.ts";
import {
  applyEvents,
  circleOrder,
  compareTime,
  describe,
  graphLinks,
} from "../dashboard/islands/_model.ts";
import type { DashEvent, HerdSnapshot } from "../dashboard/types.ts";

function accepted(server: string, client: string, time = "1.5", lat = 1, lng = 2): HerdEvent {
  return {
    kind: "location.accepted",
    t: 0,
    server,
    record: { origin: server, diff: "+0.000000000", client, location: "+1+2", time },
    from: null,
    lat,
    lng,
  };
}

class FakeSink implements SubscriberSink {
  text = "";
  open = true;
  aborted = false;
  constructor(public isReady: () => boolean = () => true) {}
  ready() {
    return this.isReady();
  }
  write(t: string) {
    this.text += t;
  }
  close(abort: boolean) {
    this.open = false;
    this.aborted = abort;
  }
}

Deno.test("hub: a subscriber that never reads is cut loose and costs no memory per event", () => {
  let now = 0;
  const bus = new EventBus();
  const hub = new EventHub(bus, { capacity: 100, stallMs: 1000, now: () => now });
  const slow = new FakeSink(() => false);
  const fast = new FakeSink();
  hub.subscribe(slow);
  hub.subscribe(fast);
  for (let i = 0; i < 10_000; i++) bus.emit(accepted("Hill", `c${i}`));
  hub.flush();
  // The herd's emit never waited; the slow one holds nothing but a cursor.
  assertEquals(hub.stats().eventsIn, 10_000);
  assert(slow.text.length < 200, "only the hello was written to the slow sink");
  assert(fast.text.includes('"id":10000'));
  now = 500;
  hub.flush();
  assert(slow.open);
  now = 1500;
  hub.flush();
  assert(!slow.open && slow.aborted, "stalled subscriber cut loose");
  assertEquals(hub.stats().cut, 1);
  assertEquals(hub.stats().subscribers, 1);
  hub.close();
  assert(!fast.open && !fast.aborted);
});

Deno.test("hub: a slow but live subscriber is told about the gap and continues", () => {
  const bus = new EventBus();
  const hub = new EventHub(bus, { capacity: 10, maxFrame: 5 });
  let ready = false;
  const sink = new FakeSink(() => ready);
  const sub = hub.subscribe(sink);
  for (let i = 0; i < 30; i++) bus.emit(accepted("Hill", `c${i}`));
  hub.flush();
  ready = true;
  hub.flush();
  // More than a frame behind: it skips to the newest maxFrame events and is told what it missed.
  assert(sink.text.includes('event: gap\nid: 25\ndata: {"from":1,"to":25}'), sink.text);
  assertEquals(sub.cursor, 30);
  const ids = [...sink.text.matchAll(/"id":(\d+)/g)].map((m) => Number(m[1]));
  assertEquals(ids, [26, 27, 28, 29, 30]);
  hub.close();
});

Deno.test("hub: recent() and WHATSAT history; ids parse strictly", () => {
  const bus = new EventBus();
  const hub = new EventHub(bus, { capacity: 5, whatsatCapacity: 2 });
  for (let i = 0; i < 3; i++) {
    bus.emit({
      kind: "whatsat",
      t: i,
      server: "Hill",
      client: `w${i}`,
      radiusKm: 1,
      bound: 1,
      provider: "offline",
      status: "OK",
      count: 0,
      latencyMs: 1,
      coalesced: false,
    });
  }
  for (let i = 0; i < 10; i++) bus.emit(accepted("Hill", `c${i}`));
  assertEquals(hub.recent(3).map((e) => e.id), [11, 12, 13]);
  assertEquals(hub.recent(100).length, 5);
  assertEquals(hub.recentWhatsats().map((e) => (e as { client: string }).client), ["w1", "w2"]);
  assertEquals(parseEventId("42"), 42);
  assertEquals(parseEventId(" 7 "), 7);
  for (const bad of [null, "", "-1", "1e3", "abc", "9999999999999999999"]) {
    assertEquals(parseEventId(bad), null);
  }
  hub.close();
});

Deno.test({
  name: "sseBody: backpressure from an unread response body cuts the subscriber",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const bus = new EventBus();
    const hub = new EventHub(bus, { stallMs: 50, flushMs: 10 });
    const body = sseBody(hub, null, 1024);
    for (let i = 0; i < 2000; i++) bus.emit(accepted("Hill", `client-${i}-with-a-long-name`));
    await new Promise((r) => setTimeout(r, 300));
    assertEquals(hub.stats().cut, 1);
    const reader = body.getReader();
    let err: unknown;
    try {
      while (!(await reader.read()).done) { /* drain what was queued */ }
    } catch (e) {
      err = e;
    }
    assert(
      err instanceof Error && /too slow/.test(err.message),
      `expected an errored stream, got ${err}`,
    );
    hub.close();
  },
});

Deno.test("model: exact decimal time order", () => {
  assert(compareTime("1621464827.959498503", "1621464827.959498502") > 0);
  assert(compareTime("9", "10") < 0);
  assertEquals(compareTime("1.50", "1.5"), 0);
  assertEquals(compareTime("007", "7"), 0);
  assert(compareTime("1621464827.9594985031", "1621464827.959498503") > 0);
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
  assertEquals(s0.records, []); // not mutated
  assertEquals(s1.records.length, 1);
  assertEquals([s1.records[0].lat, s1.records[0].lng], [10, 20]);
  assertEquals(s1.servers[0].connections, 1);
  assertEquals(graphLinks(s1).map((l) => l.state), ["half"]);
  const s2 = applyEvents(s1, [dash({ kind: "server.down", t: 0, server: "B" }, 5)]);
  assertEquals(graphLinks(s2).map((l) => l.state), ["down"]);
  assertEquals(s2.servers[1].running, false);
  const s3 = applyEvents(s2, [dash(accepted("B", "k", "6", 1, 2), 6)]);
  assertEquals(s3.records[0].time, "6");
});

Deno.test("model: the default herd is laid out with no crossing links", () => {
  const herd = new DemoHerd();
  const snap = herd.snapshot();
  const links = graphLinks(snap);
  assertEquals(links.length, DEFAULT_LINKS.length);
  const order = circleOrder(DEFAULT_NAMES, links);
  assertEquals(order[0], "Hill");
  assertEquals(new Set(order).size, 5);
  // Hill–Jaquez–Singleton–Campbell–Smith is a cycle of links: neighbours on the circle.
  const adj = (a: string, b: string) =>
    links.some((l) => (l.a === a && l.b === b) || (l.a === b && l.b === a));
  for (let i = 0; i < 5; i++) assert(adj(order[i], order[(i + 1) % 5]), order.join(","));
});

Deno.test("model: describe() has words for every streamed kind", () => {
  assertEquals(describe(dash(accepted("A", "k"), 1)), "k at +1+2 from client (origin A)");
  assertEquals(
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
});

Deno.test("security: origins and tokens", () => {
  assert(
    isLoopbackHost("127.0.0.1") && isLoopbackHost("localhost") && isLoopbackHost("::1") &&
      isLoopbackHost("[::1]"),
  );
  assert(!isLoopbackHost("0.0.0.0") && !isLoopbackHost("192.0.2.1"));
  assertEquals(resolveToken("127.0.0.1"), undefined);
  assertEquals(resolveToken("127.0.0.1", "given"), "given");
  assertEquals(resolveToken("0.0.0.0")?.length, 32);
  assertEquals(resolveToken("0.0.0.0", "env-token"), "env-token");
  const loop = ownOrigins({ host: "127.0.0.1", port: 8000 }, "evil.example:8000");
  assert(loop.has("http://localhost:8000") && loop.has("http://127.0.0.1:8000"));
  assert(!loop.has("http://evil.example:8000"), "DNS rebinding: a loopback dashboard ignores Host");
  const wild = ownOrigins({ host: "0.0.0.0", port: 8000 }, "box.lan:8000");
  assert(wild.has("http://box.lan:8000"));
  const req = (h: Record<string, string>) =>
    new Request("http://box.lan:8000/api/command", { method: "POST", headers: h });
  const opts = { host: "0.0.0.0", port: 8000, token: "t0k" };
  assertEquals(
    checkControl(req({ origin: "http://box.lan:8000", host: "box.lan:8000" }), opts)?.status,
    401,
  );
  assertEquals(
    checkControl(
      req({ origin: "http://box.lan:8000", host: "box.lan:8000", authorization: "Bearer t0k" }),
      opts,
    ),
    null,
  );
  assertEquals(
    checkControl(
      req({ origin: "http://other:8000", host: "box.lan:8000", authorization: "Bearer t0k" }),
      opts,
    )?.status,
    403,
  );
});

Deno.test("routes: the manifest lists exactly the files in routes/, with Fresh-style paths", async () => {
  const files: string[] = [];
  const walk = async (dir: URL, rel: string) => {
    for await (const e of Deno.readDir(dir)) {
      if (e.isDirectory) await walk(new URL(`${e.name}/`, dir), `${rel}${e.name}/`);
      else if (/\.(tsx?|jsx?)$/.test(e.name)) files.push(`${rel}${e.name}`);
    }
  };
  await walk(new URL("../dashboard/routes/", import.meta.url), "routes/");
  assertEquals(files.sort(), Object.keys(ROUTES).sort());
  assertEquals(routePattern("routes/index.tsx"), "/");
  assertEquals(routePattern("routes/api/events.ts"), "/api/events");
  assertEquals(routePattern("routes/api/servers/[name]/[action].ts"), "/api/servers/:name/:action");
});

Deno.test("formatters: script JSON, label escaping, histogram, reply ends", () => {
  const j = jsonForScript({ a: "</script><!--\u2028" });
  assert(!/[<>&\u2028]/.test(j));
  assertEquals(JSON.parse(j), { a: "</script><!--\u2028" });
  assertEquals(escapeLabel('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  const h = new Histogram([1, 2]);
  h.observe(0.5);
  h.observe(1.5);
  h.observe(5);
  assertEquals([h.counts, h.count, h.sum], [[1, 1], 3, 7]);
  assert(replyComplete("IAMAT a b c", "AT x\n"));
  assert(!replyComplete("WHATSAT a 1 1", "AT x\n{"));
  assert(replyComplete("WHATSAT a 1 1", "AT x\n{}\n\n"));
  assert(replyComplete("WHATSAT a 1- 1", "? WHATSAT a 1- 1\n"));
  assert(!replyComplete("X", "? X"));
});
