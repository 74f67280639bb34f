/** dashboard/hub.ts: bounded memory per subscriber, slow subscribers, recent events, SSE ids. */

import assert from "node:assert/strict";
import { accepted } from "./_helpers/events.ts";
import { EventBus } from "../servers/events.ts";
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
