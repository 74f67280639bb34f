/** dashboard/hub.ts: bounded memory per subscriber, slow subscribers, recent events, SSE ids. */

import assert from "node:assert/strict";
import { accepted } from "./_helpers/events.ts";
import { EventBus, type HerdEvent } from "../servers/events.ts";
import type { DashEvent } from "../dashboard/types.ts";
import { EventHub, parseEventId, sseBody, type SubscriberSink } from "../dashboard/hub.ts";

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
  assert.deepEqual(hub.stats().eventsIn, 10_000);
  assert.ok(slow.text.length < 200, "only the hello was written to the slow sink");
  assert.ok(fast.text.includes('"id":10000'));
  now = 500;
  hub.flush();
  assert.ok(slow.open);
  now = 1500;
  hub.flush();
  assert.ok(!slow.open && slow.aborted, "stalled subscriber cut loose");
  assert.deepEqual(hub.stats().cut, 1);
  assert.deepEqual(hub.stats().subscribers, 1);
  hub.close();
  assert.ok(!fast.open && !fast.aborted);
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
  assert.ok(sink.text.includes('event: gap\nid: 25\ndata: {"from":1,"to":25}'), sink.text);
  assert.deepEqual(sub.cursor, 30);
  const ids = [...sink.text.matchAll(/"id":(\d+)/g)].map((m) => Number(m[1]));
  assert.deepEqual(ids, [26, 27, 28, 29, 30]);
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
  assert.deepEqual(hub.recent(3).map((e) => e.id), [11, 12, 13]);
  assert.deepEqual(hub.recent(100).length, 5);
  assert.deepEqual(hub.recentWhatsats().map((e) => (e as { client: string }).client), ["w1", "w2"]);
  assert.deepEqual(parseEventId("42"), 42);
  assert.deepEqual(parseEventId(" 7 "), 7);
  for (const bad of [null, "", "-1", "1e3", "abc", "9999999999999999999"]) {
    assert.deepEqual(parseEventId(bad), null);
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
    assert.deepEqual(hub.stats().cut, 1);
    const reader = body.getReader();
    let err: unknown;
    try {
      while (!(await reader.read()).done) { /* drain what was queued */ }
    } catch (e) {
      err = e;
    }
    assert.ok(
      err instanceof Error && /too slow/.test(err.message),
      `expected an errored stream, got ${err}`,
    );
    hub.close();
  },
});

Deno.test("hub: a notice (the sparklines' series) goes to every ready subscriber, without an id", () => {
  const bus = new EventBus();
  const hub = new EventHub(bus);
  const ready = new FakeSink();
  const busy = new FakeSink(() => false);
  hub.subscribe(ready);
  hub.subscribe(busy);
  const before = busy.text;
  hub.notice("series", { t: 5, points: { Hill: [3, 1] } });
  assert.ok(
    ready.text.endsWith('event: series\ndata: {"t":5,"points":{"Hill":[3,1]}}\n\n'),
    ready.text,
  );
  // A subscriber that cannot take it now misses it (the page refetches the state on gaps).
  assert.deepEqual(busy.text, before);
  // Not an event: ids and resume points are unchanged.
  assert.deepEqual(hub.lastId, 0);
  hub.close();
});

/** `location.accepted` of `client`'s report number `n` at `server` (times grow with `n`). */
function report(server: string, client: string, n: number): HerdEvent {
  return accepted(server, client, `${1000 + n}.5`);
}

function propagation(server: string, to: string, clients: string[]): HerdEvent {
  const records = clients.map((client) => ({
    origin: server,
    diff: "+0.1",
    client,
    location: "+1+2",
    time: "1.5",
  }));
  return { kind: "propagation.sent", t: 0, server, to, records };
}

/** The SSE messages in `text`: event name (data frames: ""), id and parsed data. */
function messages(text: string): { event: string; id?: string; data: unknown }[] {
  return text.split("\n\n").filter((b) => b.includes("data: ")).map((block) => {
    const m: { event: string; id?: string; data: unknown } = { event: "", data: null };
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) m.event = line.slice(7);
      else if (line.startsWith("id: ")) m.id = line.slice(4);
      else if (line.startsWith("data: ")) m.data = JSON.parse(line.slice(6));
    }
    return m;
  });
}

Deno.test("hub: a busy tick is coalesced: each client's best location, one summary per link", () => {
  const bus = new EventBus();
  const hub = new EventHub(bus);
  const sink = new FakeSink();
  hub.subscribe(sink);
  sink.text = "";
  const servers = ["Hill", "Jaquez", "Smith", "Campbell", "Singleton"];
  let emitted = 0;
  const emit = (e: HerdEvent) => {
    bus.emit(e);
    emitted++;
  };
  emit({ kind: "client.connect", t: 0, server: "Hill", conn: 1, remote: "127.0.0.1:1" });
  for (let n = 0; n < 20; n++) {
    for (let c = 0; c < 10; c++) {
      for (const s of servers) emit(report(s, `c${c}`, n));
    }
    emit(propagation("Hill", "Jaquez", [`c${n}`, "x"]));
    emit(propagation("Jaquez", "Hill", ["y"]));
  }
  // One server took a client's report 2 before another took its report 1: the newer one wins.
  emit(report("Hill", "late", 2));
  emit(report("Jaquez", "late", 1));
  emit({ kind: "client.disconnect", t: 0, server: "Hill", conn: 1, remote: "x", reason: "eof" });
  hub.flush();
  const msgs = messages(sink.text);
  assert.deepEqual(msgs.map((m) => m.event), ["merged", ""], "one merged notice, one frame");
  const frame = msgs[1].data as DashEvent[];
  assert.deepEqual(msgs[1].id, String(emitted), "the frame carries the newest id");
  const locs = frame.filter((e) => e.kind === "location.accepted");
  assert.deepEqual(locs.length, 11, "one location per client");
  for (const e of locs) {
    if (e.kind !== "location.accepted") continue;
    const want = e.record.client === "late" ? "1002.5" : "1019.5";
    assert.deepEqual(e.record.time, want, `${e.record.client}: its newest report`);
  }
  const sent = frame.filter((e) => e.kind === "propagation.sent");
  assert.deepEqual(sent.length, 2, "one summary per link and direction");
  const hj = sent.find((e) => e.server === "Hill")!;
  assert.ok(hj.kind === "propagation.sent");
  assert.deepEqual([hj.count, hj.batches, hj.clients.length], [40, 20, 5]);
  // Events the page counts from (connections, links, servers) are never merged.
  assert.deepEqual(
    frame.filter((e) => e.kind.startsWith("client.")).map((e) => e.kind),
    ["client.connect", "client.disconnect"],
  );
  const ids = frame.map((e) => e.id);
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b), "ids in order");
  assert.deepEqual(msgs[0].data, { from: 1, to: emitted, merged: emitted - frame.length });
  assert.deepEqual(hub.stats().merged, emitted - frame.length);
  assert.deepEqual(hub.stats().gaps, 0);
  // A quiet tick is sent event by event: one report seen at every server is five events.
  sink.text = "";
  for (const s of servers) bus.emit(report(s, "c0", 30));
  hub.flush();
  const quiet = messages(sink.text);
  assert.deepEqual(quiet.map((m) => m.event), [""]);
  assert.deepEqual((quiet[0].data as DashEvent[]).map((e) => e.server), servers);
  hub.close();
});

Deno.test("hub: a tick or a resume backlog that fits a frame is sent whole, nothing merged", () => {
  // A browser that reconnects after a second's drop resumes with Last-Event-ID: every event it
  // missed comes back as long as they fit a frame (300); only a tick past that is merged.
  const bus = new EventBus();
  const hub = new EventHub(bus);
  const servers = ["Hill", "Jaquez", "Smith", "Campbell", "Singleton"];
  // 250 location events: 10 reports of 5 clients, each seen at the five servers.
  for (let n = 0; n < 10; n++) {
    for (let c = 0; c < 5; c++) for (const s of servers) bus.emit(report(s, `c${c}`, n));
  }
  const resumed = new FakeSink();
  hub.subscribe(resumed, 0);
  const live = new FakeSink();
  hub.subscribe(live);
  live.text = "";
  for (let n = 10; n < 60; n++) for (const s of servers) bus.emit(report(s, "c0", n));
  hub.flush();
  for (const [sink, first, last] of [[resumed, 1, 500], [live, 251, 500]] as const) {
    const msgs = messages(sink.text).filter((m) => m.event !== "hello");
    assert.ok(
      msgs.every((m) => m.event === ""),
      `no merged or gap notice: ${sink.text.slice(0, 200)}`,
    );
    const ids = msgs.flatMap((m) => (m.data as DashEvent[]).map((e) => e.id));
    assert.deepEqual(ids, Array.from({ length: last - first + 1 }, (_, i) => first + i));
  }
  assert.deepEqual(hub.stats().merged, 0);
  hub.close();
});

Deno.test("hub: a hundred level subscribers of a busy herd get one small frame a tick each", () => {
  // 32 clients reporting as fast as they can to five servers (the SSE benchmark's load): what a
  // tick holds is far more than a page can use; each browser gets each client's newest place.
  const bus = new EventBus();
  const hub = new EventHub(bus);
  const sinks = Array.from({ length: 100 }, () => new FakeSink());
  const writes = sinks.map(() => 0);
  sinks.forEach((s, i) => {
    const write = s.write.bind(s);
    s.write = (t: string) => {
      writes[i]++;
      write(t);
    };
    hub.subscribe(s);
    s.text = "";
  });
  writes.fill(0);
  const servers = ["Hill", "Jaquez", "Smith", "Campbell", "Singleton"];
  for (let n = 0; n < 60; n++) {
    for (let c = 0; c < 32; c++) {
      for (const s of servers) bus.emit(report(s, `bench-${c}`, n));
    }
    for (const s of servers) bus.emit(propagation(s, "Hill", ["bench-1"]));
  }
  hub.flush();
  for (let i = 0; i < sinks.length; i++) {
    // 32 locations and a few summaries: about 10 KB (sent event by event: 300 events, ~75 KB).
    assert.ok(sinks[i].text.length < 16_000, `${sinks[i].text.length} bytes in a tick`);
    assert.ok(!sinks[i].text.includes("event: gap"), "nothing skipped");
    assert.deepEqual(writes[i], 1, "one write a tick");
  }
  const frame = messages(sinks[0].text).find((m) => m.event === "")!.data as DashEvent[];
  assert.deepEqual(frame.filter((e) => e.kind === "location.accepted").length, 32);
  assert.deepEqual(hub.stats().frames, 1, "the frame is built once for all");
  hub.close();
});

Deno.test("hub: a wall-clock step neither stops the heartbeat nor cuts a live subscriber", async () => {
  // A wall clock that the test steps (set before the hub, which may keep a reference to it).
  const wall = Date.now;
  let step = 0;
  Date.now = () => wall() + step;
  const bus = new EventBus();
  // The hub's own (default) clock; flushes are driven here, the timer's period is far off.
  const hub = new EventHub(bus, { heartbeatMs: 40, stallMs: 60_000, flushMs: 60_000 });
  let blocked = false;
  const idle = new FakeSink();
  const live = new FakeSink(() => !blocked);
  try {
    hub.subscribe(idle);
    hub.subscribe(live);
    // The wall clock steps back an hour (an NTP step): the idle stream still gets its heartbeat
    // (without one the HTTP front closes it as silent).
    step = -3_600_000;
    await new Promise((r) => setTimeout(r, 120));
    hub.flush();
    assert.match(idle.text, /\n: heartbeat \d+\n\n$/);
    // It steps on two hours while `live` is blocked for one tick: not taken for a stalled one.
    step = 3_600_000;
    blocked = true;
    hub.flush();
    step = 7_200_000;
    hub.flush();
    assert.ok(live.open, "a subscriber blocked for one tick was cut");
    blocked = false;
    bus.emit(accepted("Hill", "after-the-step"));
    hub.flush();
    assert.match(live.text, /after-the-step/);
    assert.deepEqual(hub.stats().cut, 0);
  } finally {
    Date.now = wall;
    hub.close();
  }
});
