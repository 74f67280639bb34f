/**
 * The dashboard's per-client memory (dashboard/trails.ts): bounded in clients, positions and
 * propagation steps; an older record arriving late never resets the newest's path.
 */

import { assertEquals } from "./_helpers/assert.ts";
import { EventBus, type HerdEvent } from "../servers/events.ts";
import { ClientTrails } from "../dashboard/trails.ts";

function accepted(server: string, client: string, time: string, from: string | null): HerdEvent {
  return {
    kind: "location.accepted",
    t: Date.now(),
    server,
    record: { origin: "Hill", diff: "+0.1", client, location: "+1+2", time },
    from,
    lat: 1,
    lng: 2,
  };
}

Deno.test("trails: bounded clients, positions and steps; an older record never resets a path", () => {
  const bus = new EventBus();
  const trails = new ClientTrails(bus, { clients: 10, trail: 3, hops: 4 });
  try {
    for (let i = 0; i < 50; i++) bus.emit(accepted("Hill", `c${i}`, "1", null));
    assertEquals(trails.size, 10);
    assertEquals(trails.get("c0"), undefined);
    for (let t = 2; t < 10; t++) bus.emit(accepted("Hill", "c49", String(t), null));
    assertEquals(trails.get("c49")!.trail.map((p) => p.time), ["7", "8", "9"]);
    for (let i = 0; i < 10; i++) bus.emit(accepted(`S${i}`, "c49", "9", "Hill"));
    assertEquals(trails.get("c49")!.hops.length, 4);
    bus.emit(accepted("Old", "c49", "3", "Hill"));
    assertEquals(trails.get("c49")!.hops[0].server, "Hill");
    assertEquals(trails.get("c49")!.newest.time, "9");
  } finally {
    trails.close();
  }
});
