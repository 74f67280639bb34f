/**
 * Log lines cannot be forged or garbled by outside text: every byte outside printable ASCII, and
 * backslash, is written as `\xHH`, so each event is exactly one line with no raw control bytes
 * (CR, ESC sequences, 0x7f, 0x80-0xff), and unescaping gives the original bytes back.
 *
 * Over real TCP: clients send hostile commands and client IDs to an in-process herd whose logs
 * are written to a temp dir; the files are then read back. And every event kind, with hostile
 * text in every string field, through formatLogLine.
 */

import assert from "node:assert/strict";
import { startSeedHerd, TcpClient, waitFor } from "./_helpers/net.ts";
import { escapeLogText, formatLogLine, openLogs, unescapeLogText } from "../servers/log.ts";
import type { HerdEvent } from "../servers/events.ts";
import type { AtFields } from "../servers/record.ts";
import { bytesToBinary } from "../servers/lines.ts";

/** Every byte a line may not hold raw: C0 controls (LF, CR, ESC, ...), DEL, 0x80-0xff. */
const RAW_CONTROL = /[\x00-\x1f\x7f-\xff]/;

/** A hostile field (binary string): a fake log line after CR, terminal escapes, DEL, high bytes. */
const HOSTILE =
  "x\r2026-01-01T00:00:00.000Z LINK DOWN Hill\x1b[2J\x1b]0;pwned\x07\x7f\x80\xc3\xa9\xff\\x41";

/** Checks a log file's text (binary string): one line per event, no raw control byte. */
function checkLogFile(name: string, text: string): string[] {
  assert.ok(text.endsWith("\n"), `${name} ends with LF`);
  const lines = text.slice(0, -1).split("\n");
  for (const line of lines) {
    assert.ok(!RAW_CONTROL.test(line), `${name}: raw control byte in ${JSON.stringify(line)}`);
    assert.ok(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [A-Z]/.test(line), `${name}: ${line}`);
  }
  return lines;
}

Deno.test("logs: hostile client bytes are escaped, one line per event, reversibly", async () => {
  const t = await startSeedHerd();
  const dir = await Deno.makeTempDir({ prefix: "log_escape_" });
  const logs = await openLogs(t.herd.bus, dir, [...t.herd.servers.keys()]);
  // Fields without protocol whitespace (a client ID), and whole lines with CR inside.
  const client = "ev\x1b[31mil\x7f\x80\xc3\xa9\xff\\x0a\\";
  const lines = [
    `IAMAT ${client} +34.068930-118.445127 1700000000.5`,
    `WHATSAT ${client} 10 1`,
    `hello\rworld \x1b[2J\x1b[H\x1b]0;title\x07 \x7f \x80\xfe\xff back\\slash \\x41`,
    `IAMAT x\r2026-01-01T00:00:00.000Z LINK DOWN Hill +1+1 1`,
    `HERD1 HELLO \x1b[31mEvil\r Hill 1700000000000 n0nce deadbeef`,
  ];
  const c = await TcpClient.connect(t.port("Hill"));
  try {
    for (const l of lines) await c.send(l + "\n");
    await c.waitUntil((r) => r.includes("? HERD1") || c.eof, 10_000).catch(() => {});
    // The record reaches all five (SEND/RECV/ACCEPT lines carry its client ID everywhere).
    await waitFor(
      () => t.herd.snapshot().servers.every((s) => s.records >= 1),
      10_000,
      "propagation",
    );
  } finally {
    await c.close();
    await t.close();
    await logs.close();
  }
  const all: string[] = [];
  for (const name of [...t.herd.servers.keys()]) {
    const text = bytesToBinary(await Deno.readFile(`${dir}/${name}.log`));
    all.push(...checkLogFile(name, text));
  }
  await Deno.remove(dir, { recursive: true });
  const back = all.map(unescapeLogText);
  // Every input line comes back byte for byte from its IN line, and the forged line is not one.
  for (const l of lines.slice(0, 4)) {
    assert.ok(
      back.some((b) => / IN #\d+ /.test(b) && b.endsWith(l)),
      `IN line for ${JSON.stringify(l)}`,
    );
  }
  assert.ok(back.some((b) => b.includes(` ACCEPT client AT Hill `) && b.includes(` ${client} `)));
  assert.ok(back.some((b) => / OUT #\d+ \? hello\rworld /.test(b)), "the ? reply, reversibly");
  // The four other servers each accepted it from a neighbour: the loop below is never empty.
  const propagation = back.filter((b) => / (SEND to|ACCEPT from) /.test(b));
  assert.ok(propagation.filter((b) => / SEND to /.test(b)).length >= 1, "a SEND line");
  assert.ok(propagation.filter((b) => / ACCEPT from /.test(b)).length >= 4, "4 ACCEPT lines");
  for (const b of propagation) {
    assert.ok(b.includes(client), `propagation line names the client ID: ${JSON.stringify(b)}`);
  }
  assert.ok(!all.some((l) => l.startsWith("2026-01-01T00:00:00.000Z")), "no forged line");
  assert.ok(!all.some((l) => l.includes("test-secret-0123456789")), "the herd secret is in no log");
  assert.ok(all.some((l) => l.includes("\\x1b[31m")), "ESC is shown as \\x1b");
  assert.ok(all.some((l) => l.includes("back\\x5cslash \\x5cx41")), "backslash is \\x5c");
});

Deno.test("logs: blank lines are not logged, so a flood of newlines costs no log", async () => {
  // Blank lines get no reply; each used to be logged as an IN line: 2 MB of newlines made
  // 70 MB of log (found by the adversarial review).
  const t = await startSeedHerd();
  const dir = await Deno.makeTempDir({ prefix: "log_blank_" });
  const logs = await openLogs(t.herd.bus, dir, ["Hill"]);
  const c = await TcpClient.connect(t.port("Hill"));
  const flood = "\n".repeat(50_000) + " \t\r\n".repeat(10_000) + "\r\n".repeat(10_000);
  try {
    await c.send(flood + "IAMAT after.blanks +34.068930-118.445127 1700000000.5\n");
    await c.waitUntil((r) => r.includes("\n"), 10_000);
    assert.match(c.received, /^AT Hill \S+ after\.blanks /, "the command after them answered");
  } finally {
    await c.close();
    await logs.close();
    await t.close();
  }
  const text = await Deno.readTextFile(`${dir}/Hill.log`);
  await Deno.remove(dir, { recursive: true });
  const ins = text.split("\n").filter((l) => / IN #\d+/.test(l));
  assert.deepEqual(ins.length, 1, `IN lines: ${ins.slice(0, 3).join(" | ")} ...`);
  assert.match(ins[0], /IAMAT after\.blanks/);
  assert.ok(text.length < 4_000, `${text.length} bytes of log for ${flood.length} of blank lines`);
});

Deno.test("logs: every event kind escapes every text field", () => {
  const rec: AtFields = {
    origin: HOSTILE,
    diff: "+0.1",
    client: HOSTILE,
    location: HOSTILE,
    time: HOSTILE,
  };
  const base = { t: 0, server: HOSTILE };
  const events: HerdEvent[] = [
    { ...base, kind: "server.up", host: HOSTILE, port: 1 },
    { ...base, kind: "server.down" },
    { ...base, kind: "client.connect", conn: 1, remote: HOSTILE },
    { ...base, kind: "client.disconnect", conn: 1, remote: HOSTILE, reason: HOSTILE },
    { ...base, kind: "client.refused", remote: HOSTILE, reason: HOSTILE },
    { ...base, kind: "line.in", conn: 1, line: HOSTILE },
    { ...base, kind: "reply.out", conn: 1, reply: HOSTILE + "\n" },
    { ...base, kind: "location.accepted", record: rec, from: null, lat: 1, lng: 1 },
    { ...base, kind: "location.accepted", record: rec, from: HOSTILE, lat: 1, lng: 1 },
    { ...base, kind: "location.dropped", record: rec, from: null, reason: "stale" },
    { ...base, kind: "location.dropped", record: rec, from: HOSTILE, reason: "duplicate" },
    { ...base, kind: "propagation.sent", to: HOSTILE, records: [rec, rec] },
    { ...base, kind: "propagation.received", from: HOSTILE, records: [rec] },
    { ...base, kind: "link.up", peer: HOSTILE, direction: "in" },
    { ...base, kind: "link.down", peer: HOSTILE, reason: HOSTILE },
    { ...base, kind: "sync.done", peer: HOSTILE, sent: 1, received: 2, ms: 3 },
    { ...base, kind: "peer.rejected", remote: HOSTILE, reason: HOSTILE },
    {
      ...base,
      kind: "whatsat",
      client: HOSTILE,
      radiusKm: 1,
      bound: 1,
      provider: HOSTILE,
      status: HOSTILE,
      count: 0,
      latencyMs: 1,
      coalesced: false,
      // Outside text that is real Unicode (a Places error), not a binary string.
      error: "Fehler \u00e9\u{1F600}\r\nx",
    },
    { ...base, kind: "error", reason: "internal", message: HOSTILE + "\u2028\u{1F600}" },
  ];
  const kinds = new Set<string>();
  for (const e of events) {
    const line = formatLogLine(e)!;
    kinds.add(e.kind);
    assert.ok(line !== undefined, e.kind);
    assert.ok(!RAW_CONTROL.test(line), `${e.kind}: ${JSON.stringify(line)}`);
    assert.ok(!/[^\x20-\x7e]/.test(line), `${e.kind}: only printable ASCII`);
    assert.ok(!line.includes("LINK DOWN Hill\x1b"), e.kind);
    const back = unescapeLogText(line);
    if (e.kind !== "server.down") {
      assert.ok(back.includes(HOSTILE), `${e.kind}: ${JSON.stringify(back)}`);
    }
  }
  assert.deepEqual(kinds.size, 17, "every kind");
  // A char up to 0xff is a byte (wire text is binary strings); above, real Unicode is escaped as
  // its UTF-8 bytes, surrogate pairs whole.
  assert.deepEqual(escapeLogText("\xe9\u0101\u{1F600}"), "\\xe9\\xc4\\x81\\xf0\\x9f\\x98\\x80");
  assert.deepEqual(unescapeLogText("\\xc3\\xa9\\x5cx41"), "\xc3\xa9\\x41");
  // Text that needs nothing is returned as it is.
  const plain = "IN #3 IAMAT kiwi +34.068930-118.445127 1621464827.959498503";
  assert.deepEqual(escapeLogText(plain), plain);
});
