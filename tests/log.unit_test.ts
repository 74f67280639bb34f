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
import { formatLogLine, openLogs } from "../servers/log.ts";
import type { AtFields } from "../servers/record.ts";
import { bytesToBinary } from "../servers/lines.ts";

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
