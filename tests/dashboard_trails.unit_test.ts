/**
 * The dashboard's per-client memory (dashboard/trails.ts): bounded in clients, positions and
 * propagation steps; an older record arriving late never resets the newest's path.
 */

import assert from "node:assert/strict";
import { accepted as event } from "./_helpers/events.ts";
import { EventBus, type HerdEvent } from "../servers/events.ts";
import { ClientTrails } from "../dashboard/trails.ts";

/** Hill's record of `client` at `time`, stored at `server` from peer `from` (null: a client). */
function accepted(server: string, client: string, time: string, from: string | null): HerdEvent {
  const e = event(server, client, time);
  return e.kind === "location.accepted"
    ? { ...e, from, record: { ...e.record, origin: "Hill" } }
    : e;
}

Deno.test("trails: bounded clients, positions and steps; an older record never resets a path", () => {
  const bus = new EventBus();
  const trails = new ClientTrails(bus, { clients: 10, trail: 3, hops: 4 });
  try {
    for (let i = 0; i < 50; i++) bus.emit(accepted("Hill", `c${i}`, "1", null));
    assert.deepEqual(trails.size, 10);
    assert.deepEqual(trails.get("c0"), undefined);
    for (let t = 2; t < 10; t++) bus.emit(accepted("Hill", "c49", String(t), null));
    assert.deepEqual(trails.get("c49")!.trail.map((p) => p.time), ["7", "8", "9"]);
    for (let i = 0; i < 10; i++) bus.emit(accepted(`S${i}`, "c49", "9", "Hill"));
    assert.deepEqual(trails.get("c49")!.hops.length, 4);
    bus.emit(accepted("Old", "c49", "3", "Hill"));
    assert.deepEqual(trails.get("c49")!.hops[0].server, "Hill");
    assert.deepEqual(trails.get("c49")!.newest.time, "9");
  } finally {
    trails.close();
  }
});

Deno.test("trails: bounded in the bytes of the records kept, not only in clients (adversarial review)", () => {
  // Found by an adversarial review (adv15): each track keeps its client's newest record whole; a
  // remote view's records are copies from its streams, up to 64 KiB each, so 10,000 clients
  // held 640 MB, bounded by nothing else.
  const bus = new EventBus();
  const trails = new ClientTrails(bus, { clients: 10_000, bytes: 1024 * 1024 });
  const fat = (client: string, time: string): HerdEvent => {
    const e = event("Hill", client, time);
    return e.kind === "location.accepted"
      ? { ...e, record: { ...e.record, location: "+1.0" + "0".repeat(60_000) + "+1" } }
      : e;
  };
  try {
    for (let i = 0; i < 100; i++) bus.emit(fat(`f${i}`, "1"));
    assert.ok(trails.size <= 17, `${trails.size} fat records kept within 1 MiB`);
    assert.notEqual(trails.get("f99"), undefined, "the newest is kept");
    assert.equal(trails.get("f0"), undefined, "the least recently updated went first");
    // Small records fit in their thousands: the bound is on bytes, not on a count.
    for (let i = 0; i < 5_000; i++) bus.emit(accepted("Hill", `s${i}`, "1", null));
    assert.ok(trails.size >= 5_000, `${trails.size}`);
  } finally {
    trails.close();
  }
});
