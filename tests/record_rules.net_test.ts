/**
 * Every place outside the store that decides between two records of a client follows the herd's
 * rules (servers/record.ts): the browser's model (dashboard/islands/_model.ts) and the demo herd
 * (dashboard/dev/demo_herd.ts). Exact decimal times (no float compare), the tie rule for equal
 * times, and the client protocol's own parsing of IAMAT and WHATSAT.
 */

import assert from "node:assert/strict";
import { TcpClient } from "./_helpers/net.ts";
import { compareRecords } from "../servers/record.ts";
import type { HerdEvent } from "../servers/events.ts";
import { mergeRecord } from "../dashboard/islands/_model.ts";
import { DemoHerd, formatLocation } from "../dashboard/dev/demo_herd.ts";
import type { RecordSnapshot } from "../dashboard/types.ts";

/** Two times a float cannot tell apart (both parse to the same double). */
const EARLIER = "1479413884.392014450";
const LATER = "1479413884.392014451";

function rec(time: string, location: string, origin = "Hill"): RecordSnapshot {
  return { client: "kiwi", origin, diff: "+0.000000000", location, time, lat: 0, lng: 0 };
}

/** The herd's winner of a set of records of one client. */
function herdWinner(records: RecordSnapshot[]): RecordSnapshot {
  return records.reduce((best, r) => (compareRecords(r, best) > 0 ? r : best));
}

Deno.test("record rules: the times under test differ past float precision", () => {
  assert.deepEqual(Number(EARLIER), Number(LATER));
  assert.ok(compareRecords(rec(LATER, "+1+1"), rec(EARLIER, "+1+1")) > 0);
});

Deno.test("record rules: the browser's mergeRecord keeps the herd's winner, in any order", () => {
  const cases: RecordSnapshot[][] = [
    [rec(EARLIER, "+1+1"), rec(LATER, "+2+2")],
    // Equal times: the tie rule (time text, then location, origin, diff) decides.
    [rec("5", "+1+1"), rec("5", "+2+2")],
    [rec("5", "+1+1", "Hill"), rec("5", "+1+1", "Smith")],
    [rec("5", "+1+1"), rec("5.0", "+1+1")],
  ];
  for (const records of cases) {
    const want = herdWinner(records);
    for (const order of [records, [...records].reverse()]) {
      const byClient = new Map<string, RecordSnapshot>();
      for (const r of order) mergeRecord(byClient, r);
      assert.deepEqual(byClient.get("kiwi"), want, JSON.stringify(order.map((r) => r.time)));
    }
  }
  // The same record again changes nothing.
  const byClient = new Map([["kiwi", rec("5", "+1+1")]]);
  assert.deepEqual(mergeRecord(byClient, rec("5", "+1+1")), false);
});

Deno.test("record rules: the demo herd keeps what the herd would, in any order", async () => {
  // [time, lat] pairs; the demo formats the location from the degrees.
  const cases: [string, number][][] = [
    [[EARLIER, 1], [LATER, 2]],
    [["5", 1], ["5", 2]],
    [["5", 1], ["5.0", 1]],
  ];
  for (const pair of cases) {
    const want = herdWinner(pair.map(([time, lat]) => rec(time, formatLocation(lat, lat))));
    for (const order of [pair, [...pair].reverse()]) {
      const what = JSON.stringify(order);
      const herd = new DemoHerd({ hopMs: 1 });
      const events: HerdEvent[] = [];
      herd.bus.subscribe((e) => events.push(e));
      await herd.start();
      try {
        // Both reports in one turn: no flooding timer runs in between.
        for (const [time, lat] of order) herd.report("Hill", "kiwi", lat, lat, time);
        const got = herd.snapshot().records.find((r) => r.client === "kiwi");
        assert.deepEqual([got?.time, got?.location], [want.time, want.location], what);
        const atHill = (kind: string) =>
          events.filter((e) => e.kind === kind && e.server === "Hill" && "from" in e && !e.from);
        const secondWins = order[1][0] === want.time &&
          formatLocation(order[1][1], order[1][1]) === want.location;
        assert.deepEqual(atHill("location.accepted").length, secondWins ? 2 : 1, what);
        assert.deepEqual(atHill("location.dropped").length, secondWins ? 0 : 1, what);
      } finally {
        await herd.stop();
      }
    }
  }
});

Deno.test("record rules: the demo herd's TCP port parses IAMAT and WHATSAT as the herd does", async () => {
  const herd = new DemoHerd({ tcp: true });
  await herd.start();
  const port = herd.snapshot().servers.find((s) => s.name === "Smith")!.port;
  const client = await TcpClient.connect(port);
  try {
    const ask = async (line: string) => {
      const before = client.received.length;
      await client.send(`${line}\n`);
      const text = await client.waitUntil(
        (t) =>
          t.length > before && (t.endsWith("\n\n") || /^(\?|AT)[^\n]*\n$/.test(t.slice(before))),
        5000,
      );
      return text.slice(before);
    };
    // Echoed byte for byte, as the herd does (not re-formatted from parsed degrees).
    assert.deepEqual(
      await ask(`IAMAT kiwi +34.06-118.44 ${LATER}`),
      `AT Smith +0.000000000 kiwi +34.06-118.44 ${LATER}\n`,
    );
    // Over 90 only past float precision: the herd's exact range check refuses it.
    const over = "IAMAT kiwi +90.0000000000000000001+0 1";
    assert.deepEqual(await ask(over), `? ${over}\n`);
    // Out of the WHATSAT ranges (radius 0 < r <= 50 km, bound <= 20).
    assert.deepEqual(await ask("WHATSAT kiwi 51 5"), "? WHATSAT kiwi 51 5\n");
    assert.deepEqual(await ask("WHATSAT kiwi 10 21"), "? WHATSAT kiwi 10 21\n");
    const ws = await ask("WHATSAT kiwi 10 5");
    assert.ok(ws.startsWith(`AT Smith +0.000000000 kiwi +34.06-118.44 ${LATER}\n{`), ws);
  } finally {
    client.close();
    await herd.stop();
  }
});
