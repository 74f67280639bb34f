/**
 * servers/log.ts's text files: what `openLogs` writes for an event is exactly
 * `formatLogLine(event)` and a LF, whatever the event's text holds. The file path copies the
 * time's bytes from a cache and the text straight into the batch (escaping only the rare line
 * that needs it), so it is checked against the formatter on random events: plain ASCII, control
 * bytes, backslash, high bytes, Unicode above 0xff, times with years past 9999, lines longer
 * than a batch.
 */

import assert from "node:assert/strict";
import { EventBus, type HerdEvent } from "../servers/events.ts";
import { formatJsonLogLine, formatLogLine, openLogs } from "../servers/log.ts";
import type { AtFields } from "../servers/record.ts";
import { bytesToBinary } from "../servers/lines.ts";
import { RecordStore } from "../servers/store.ts";
import { RecordTable } from "../servers/record_table.ts";

/** A small seeded generator, so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PIECES = [
  "IAMAT",
  "kiwi.cs.ucla.edu",
  "+34.068930-118.445127",
  "1621464827.959498503",
  " ",
  "\\",
  "\r",
  "\n",
  "\x1b[2J",
  "\x7f",
  "\x80\xc3\xa9\xff",
  "\u0101",
  "\u{1F600}",
  "\t",
  "",
];

function text(r: () => number, longer = false): string {
  if (r() < 0.6) return `bench-${Math.floor(r() * 1e6)}`; // most fields are plain
  let s = "";
  const n = 1 + Math.floor(r() * (longer ? 12 : 5));
  for (let i = 0; i < n; i++) s += PIECES[Math.floor(r() * PIECES.length)];
  return s;
}

function randomEvent(r: () => number, server: string): HerdEvent {
  // Mostly the current millisecond (cached time), sometimes far ones (years past 9999 included).
  const t = r() < 0.8 ? 1764210000000 + Math.floor(r() * 3) : Math.floor(r() * 300_000_000_000_000);
  const rec = (): AtFields => ({
    origin: text(r),
    diff: "+0.000123456",
    client: text(r),
    location: text(r),
    time: text(r),
  });
  const base = { t, server };
  const catchUp = r() < 0.2;
  const events: HerdEvent[] = [
    { ...base, kind: "line.in", conn: Math.floor(r() * 100), line: text(r, true) },
    { ...base, kind: "reply.out", conn: 2, reply: text(r, true) + (r() < 0.5 ? "\n" : "") },
    // AT replies: short fields or long ones (elided in OUT), with a WHATSAT's body or not.
    {
      ...base,
      kind: "reply.out",
      conn: 4,
      reply:
        `AT ${text(r)} +0.${"1".repeat(r() < 0.5 ? 9 : 70)} ${text(r)} +1.${
          "0".repeat(r() < 0.5 ? 3 : 90)
        }-2.5 ${r() < 0.5 ? "1.5" : "1." + "5".repeat(80)}\n` +
        (r() < 0.5 ? `{\n   "status" : "OK"\n}\n\n` : ""),
      places: r() < 0.5 ? { status: text(r), results: 3 } : undefined,
    },
    {
      ...base,
      kind: "location.accepted",
      record: rec(),
      from: r() < 0.5 ? null : text(r),
      lat: 1,
      lng: 2,
      catchUp,
    },
    {
      ...base,
      kind: "location.dropped",
      record: rec(),
      from: text(r),
      reason: "duplicate",
      catchUp,
    },
    { ...base, kind: "location.dropped", record: rec(), from: null, reason: "stale" },
    { ...base, kind: "propagation.sent", to: text(r), records: [rec(), rec()], catchUp },
    { ...base, kind: "propagation.received", from: text(r), records: [rec()], catchUp },
    { ...base, kind: "propagation.sent", to: text(r), records: [], catchUp: false },
    { ...base, kind: "client.connect", conn: 3, remote: text(r) },
    { ...base, kind: "link.down", peer: text(r), reason: text(r) },
    { ...base, kind: "error", reason: "internal", message: text(r, true) },
    { ...base, kind: "command", conn: 1, verb: "IAMAT", result: "ok", reason: "", seconds: 0 },
  ];
  return events[Math.floor(r() * events.length)];
}

Deno.test("logs: a text log file holds exactly formatLogLine of each event, on random events", async () => {
  const dir = await Deno.makeTempDir({ prefix: "log-unit-" });
  try {
    const bus = new EventBus();
    const logs = await openLogs(bus, dir, ["A", "B"]);
    const r = rng(20261127);
    const want: Record<string, string[]> = { A: [], B: [] };
    for (let i = 0; i < 20_000; i++) {
      const server = r() < 0.5 ? "A" : "B";
      let e = randomEvent(r, server);
      // Now and then a line longer than a whole batch (512 KiB), and one that nearly fills one.
      if (i === 7_000 || i === 12_000) {
        const big = i === 7_000 ? 600 * 1024 : 200 * 1024;
        e = { kind: "line.in", t: 1764210000000, server, conn: 1, line: "x".repeat(big) + "\r" };
      }
      bus.emit(e);
      const line = formatLogLine(e);
      if (line !== undefined) want[server].push(line + "\n");
    }
    await logs.close();
    for (const name of ["A", "B"]) {
      const got = bytesToBinary(await Deno.readFile(`${dir}/${name}.log`));
      const expected = want[name].join("");
      if (got !== expected) {
        const gotLines = got.split("\n");
        const wantLines = expected.split("\n");
        const k = gotLines.findIndex((l, j) => l !== wantLines[j]);
        assert.deepEqual(gotLines[k], wantLines[k], `${name}.log, line ${k + 1}`);
      }
      assert.equal(got.length, expected.length, `${name}.log`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("logs: OUT lines elide long AT fields and summarise a WHATSAT's body, in text and JSON", () => {
  const loc = "+1." + "0".repeat(100) + "-2.5";
  const at = `AT Hill +0.500000000 kiwi ${loc} 1700000000.5`;
  const elided = `AT Hill +0.500000000 kiwi +1.0000000000000...[${loc.length} bytes] 1700000000.5`;
  const body = '{\n   "results" : [],\n   "status" : "ZERO_RESULTS"\n}';
  const base = { kind: "reply.out", t: 0, server: "Hill", conn: 7 } as const;
  const whatsat = {
    ...base,
    reply: `${at}\n${body}\n\n`,
    places: { status: "ZERO_RESULTS", results: 0 },
  };
  const stamp = "1970-01-01T00:00:00.000Z";
  // Short fields: the reply as it was.
  const short = "AT Hill +0.500000000 kiwi +34.068930-118.445127 1700000000.5";
  assert.equal(formatLogLine({ ...base, reply: short + "\n" }), `${stamp} OUT #7 ${short}`);
  assert.equal(formatLogLine({ ...base, reply: at + "\n" }), `${stamp} OUT #7 ${elided}`);
  assert.equal(
    formatLogLine(whatsat),
    `${stamp} OUT #7 ${elided} [JSON ${body.length} bytes, status=ZERO_RESULTS, results=0]`,
  );
  // Without the answer's summary (an event from elsewhere): the size alone.
  assert.equal(
    formatLogLine({ ...whatsat, places: undefined }),
    `${stamp} OUT #7 ${elided} [JSON ${body.length} bytes]`,
  );
  // A client ID is never elided; `? <line>` replies are written whole (the log budget's).
  const id = "c".repeat(200);
  assert.equal(
    formatLogLine({ ...base, reply: `AT Hill +0.5 ${id} +1+2 3\n` }),
    `${stamp} OUT #7 AT Hill +0.5 ${id} +1+2 3`,
  );
  const bad = `? IAMAT x ${loc} 1`;
  assert.equal(formatLogLine({ ...base, reply: bad + "\n" }), `${stamp} OUT #7 ${bad}`);
  assert.deepEqual(JSON.parse(formatJsonLogLine(whatsat)!), {
    time: stamp,
    server: "Hill",
    kind: "reply.out",
    conn: 7,
    reply: elided + "\n",
    body: { bytes: body.length, status: "ZERO_RESULTS", results: 0 },
  });
  assert.deepEqual(
    JSON.parse(formatJsonLogLine({ ...base, reply: short + "\n" })!).reply,
    short + "\n",
  );
});

Deno.test("logs: the ACCEPT and stale-client DROP lines of records the servers of a process share are exactly formatLogLine's, fields to escape included", async () => {
  const dir = await Deno.makeTempDir({ prefix: "log-unit-" });
  try {
    const bus = new EventBus();
    const names = ["A", "B", "C"];
    const logs = await openLogs(bus, dir, names);
    const table = new RecordTable();
    const stores = names.map(() => new RecordStore(table));
    const r = rng(13);
    const want: Record<string, string[]> = { A: [], B: [], C: [] };
    const t = 1764210000000;
    for (let i = 0; i < 6_000; i++) {
      // Fields from the random pieces (escapes, high bytes, chars above 0xff), now and then one
      // too long to be kept for the process; most clients come back with a newer record.
      const fields = {
        origin: text(r),
        diff: "+0.000123456",
        client: i % 500 === 0 ? "k".repeat(1500) : `${text(r)}-${i % 700}`,
        // A char above 0xff whose low byte is printable ("A"): escaped as its UTF-8 bytes.
        location: r() < 0.05 ? `\u0141${text(r)}` : text(r),
        time: `${i}.${text(r)}`,
      };
      names.forEach((server, k) => {
        const record = stores[k].offer(fields, -1).record!;
        const from = k === 0 ? null : names[k - 1];
        const events: HerdEvent[] = [
          { kind: "location.accepted", t, server, record, from, lat: 1, lng: 2 },
          { kind: "location.dropped", t, server, record, from: null, reason: "stale" },
        ];
        for (const e of events) {
          bus.emit(e);
          want[server].push(formatLogLine(e)! + "\n");
        }
      });
    }
    await logs.close();
    for (const name of names) {
      const got = bytesToBinary(await Deno.readFile(`${dir}/${name}.log`)).split("\n");
      const expected = want[name].join("").split("\n");
      const k = got.findIndex((l, j) => l !== expected[j]);
      assert.equal(k, -1, `${name}.log, line ${k + 1}: ${got[k]} for ${expected[k]}`);
      assert.equal(got.length, expected.length, `${name}.log`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
