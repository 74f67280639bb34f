/**
 * The sparklines' data (dashboard/series.ts): records stored per second and connections per
 * server, one point a tick, bounded.
 */

import assert from "node:assert/strict";
import { accepted as event } from "./_helpers/events.ts";
import { EventBus, type HerdEvent } from "../servers/events.ts";
import { ServerSeries } from "../dashboard/series.ts";
import type { HerdSnapshot } from "../dashboard/types.ts";

/** Hill's record of `client` at `time`, stored at `server` from peer `from` (null: a client). */
function accepted(server: string, client: string, time: string, from: string | null): HerdEvent {
  const e = event(server, client, time);
  return e.kind === "location.accepted"
    ? { ...e, from, record: { ...e.record, origin: "Hill" } }
    : e;
}

Deno.test("series: updates per second and connections per server, bounded", () => {
  const bus = new EventBus();
  const snap: HerdSnapshot = {
    servers: [{
      name: "Hill",
      host: "127.0.0.1",
      port: 1,
      running: true,
      connections: 3,
      records: 0,
      neighbors: [],
      links: [],
    }],
    records: [],
    places: "offline",
  };
  const series = new ServerSeries({ bus, snapshot: () => snap }, { points: 4, stepMs: 500 });
  try {
    for (let i = 0; i < 7; i++) bus.emit(accepted("Hill", `c${i}`, "1", null));
    const tick = series.tick();
    // 7 in a 500 ms step is 14 a second.
    assert.deepEqual(tick.points.Hill, [14, 3]);
    for (let i = 0; i < 10; i++) series.tick();
    const data = series.data();
    assert.deepEqual(data.servers.Hill.upd, [0, 0, 0, 0]);
    assert.deepEqual(data.servers.Hill.conns, [3, 3, 3, 3]);
    assert.deepEqual(data.step, 500);
  } finally {
    series.close();
  }
});
