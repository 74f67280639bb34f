import assert from "node:assert/strict";
import {
  CONN_BURST,
  CONN_RATE,
  LogBudget,
  type MuteNote,
  SERVER_BURST,
} from "../servers/log_budget.ts";
import { formatMuteLine } from "../servers/log.ts";
import type { HerdEvent } from "../servers/events.ts";

/** The three events of one invalid line of `conn` at time `t` (ms), in the order the server emits them. */
function invalidLine(conn: number, t: number, line: string): HerdEvent[] {
  const base = { t, server: "Hill", conn };
  return [
    { ...base, kind: "line.in", line },
    { ...base, kind: "reply.out", reply: `? ${line}\n` },
    { ...base, kind: "invalid", line, verb: "other", reason: "unknown-verb" },
  ];
}

function validLine(conn: number, t: number): HerdEvent[] {
  const base = { t, server: "Hill", conn };
  return [
    { ...base, kind: "line.in", line: "IAMAT a +1+1 1" },
    { ...base, kind: "reply.out", reply: "AT Hill +0.1 a +1+1 1\n" },
  ];
}

/** Feeds events; returns how many were written and the notes. */
function feed(budget: LogBudget, events: HerdEvent[]) {
  const notes: MuteNote[] = [];
  let written = 0;
  for (const e of events) if (budget.admit(e, (n) => notes.push(n))) written++;
  return { written, notes };
}

Deno.test("log budget: a few bad lines are logged in full; a stream is muted, then heard again once refilled", () => {
  const b = new LogBudget();
  const line = "x".repeat(1000); // costs 2,120 of the 16 KiB
  const few = feed(b, invalidLine(1, 0, line).concat(invalidLine(1, 0, line)));
  assert.deepEqual(few, { written: 6, notes: [] });

  const stream = feed(b, Array.from({ length: 50 }, () => invalidLine(1, 0, line)).flat());
  assert.deepEqual(stream.notes, [{ kind: "mute", conn: 1, skipped: 0 }]);
  const before = Math.floor(CONN_BURST / (2 * line.length + 120)) - 2;
  assert.equal(
    stream.written,
    3 * before + 2,
    "the lines before the overdraw (its IN and OUT too)",
  );

  // Half a bucket later (rate 1 KiB/s), the next line is heard, after an UNMUTE note counting
  // the lines left out.
  const later = (CONN_BURST / 2 / CONN_RATE) * 1000;
  const quiet = feed(b, invalidLine(1, later - 100, line));
  assert.deepEqual(quiet.written, 0);
  const back = feed(b, invalidLine(1, later + 1, line));
  const leftOut = 3 * 50 - stream.written + 3;
  assert.deepEqual(back.notes, [{ kind: "unmute", conn: 1, skipped: leftOut }]);
  assert.equal(back.written, 3);
});

Deno.test("log budget: clients that send only valid lines are never muted, whatever the others do", () => {
  const b = new LogBudget();
  const events: HerdEvent[] = [];
  for (let i = 0; i < 2000; i++) {
    events.push(...invalidLine(1, i, "y".repeat(200)), ...validLine(2, i));
  }
  const notes: MuteNote[] = [];
  let good = 0;
  for (const e of events) {
    if (b.admit(e, (n) => notes.push(n)) && "conn" in e && e.conn === 2) good++;
  }
  assert.equal(good, 4000);
  assert.ok(notes.every((n) => n.conn === 1));
});

Deno.test("log budget: many connections share the server's bucket; a disconnect says what was left out", () => {
  const b = new LogBudget();
  const line = "z".repeat(2000); // 4,120 a line: 3 per connection within its own 16 KiB
  let logged = 0; // INVALID lines written
  const notes: MuteNote[] = [];
  for (let conn = 1; conn <= 1000; conn++) {
    for (let k = 0; k < 3; k++) {
      for (const e of invalidLine(conn, 0, line)) {
        if (b.admit(e, (n) => notes.push(n)) && e.kind === "invalid") logged++;
      }
    }
  }
  const cost = 2 * line.length + 120;
  assert.ok(logged <= SERVER_BURST / cost + 1, `${logged} lines logged within the server's 1 MiB`);
  assert.ok(logged >= SERVER_BURST / cost - 1, `${logged}: all of the server's budget used`);
  const muted = notes.filter((n) => n.kind === "mute").map((n) => n.conn);
  assert.ok(muted.length > 700, `${muted.length} connections muted`);
  const last = muted[muted.length - 1];
  const bye = feed(b, [{
    kind: "client.disconnect",
    t: 0,
    server: "Hill",
    conn: last,
    remote: "127.0.0.1:1",
    reason: "eof",
  }]);
  assert.equal(bye.written, 1, "the DISCONNECT itself is written");
  // Muted at its first INVALID (the server's bucket was empty): that line, and the IN, OUT and
  // INVALID of its next two.
  assert.deepEqual(bye.notes, [{ kind: "unmute", conn: last, skipped: 7 }]);
});

Deno.test("log budget: mute lines in text and JSON", () => {
  assert.equal(
    formatMuteLine({ kind: "mute", conn: 7, skipped: 0 }, 0, "Hill", false),
    "1970-01-01T00:00:00.000Z MUTE #7 (invalid lines or stale IAMATs over the log budget: counted, not logged)",
  );
  assert.equal(
    formatMuteLine({ kind: "unmute", conn: 7, skipped: 5 }, 0, "Hill", false),
    "1970-01-01T00:00:00.000Z UNMUTE #7 (5 line(s) not logged)",
  );
  assert.deepEqual(
    JSON.parse(formatMuteLine({ kind: "unmute", conn: 7, skipped: 5 }, 0, "Hill", true)),
    { time: "1970-01-01T00:00:00.000Z", server: "Hill", kind: "log.unmute", conn: 7, skipped: 5 },
  );
});

Deno.test("log budget: a client's dropped IAMATs are charged to it; a peer's drops and new records never are", () => {
  const b = new LogBudget();
  const record = {
    origin: "Hill",
    diff: "+0.1",
    client: "c",
    location: "+1+1",
    time: "1",
  };
  const dropped = (conn: number | undefined, t: number): HerdEvent => ({
    kind: "location.dropped",
    t,
    server: "Hill",
    record,
    from: conn === undefined ? "Jaquez" : null,
    reason: "duplicate",
    conn,
  });
  const accepted: HerdEvent = {
    kind: "location.accepted",
    t: 0,
    server: "Hill",
    record,
    from: null,
    lat: 1,
    lng: 1,
  };
  const peers = feed(
    b,
    Array.from({ length: 5000 }, (_, i) => [dropped(undefined, i), accepted]).flat(),
  );
  assert.deepEqual(peers, { written: 10_000, notes: [] });
  const client = feed(b, Array.from({ length: 5000 }, () => dropped(3, 0)));
  assert.deepEqual(client.notes, [{ kind: "mute", conn: 3, skipped: 0 }]);
  assert.ok(client.written < CONN_BURST / 100, `${client.written} drops written`);
});
