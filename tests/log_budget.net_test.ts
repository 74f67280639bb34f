/**
 * The log budget over real TCP: a client streaming invalid lines (short ones, and long binary
 * ones whose bytes are each escaped to four) gets every reply and is counted in every event, but
 * its share of the log file is bounded; a client that sends a few bad lines among good ones is
 * logged in full; the mute and unmute lines account for every line left out.
 */

import assert from "node:assert/strict";
import { startSeedHerd, TcpClient } from "./_helpers/net.ts";
import { openLogs } from "../servers/log.ts";
import { CONN_BURST } from "../servers/log_budget.ts";
import { bytesToBinary } from "../servers/lines.ts";

const SHORT = 10_000; // `x` lines
const LONG = 400; // lines of 500 bytes 0x80: 2,000 log bytes each, escaped, in IN and in OUT

Deno.test("log budget: a client streaming invalid lines cannot fill the log; others are logged in full", async () => {
  await using t = await startSeedHerd();
  const dir = await Deno.makeTempDir({ prefix: "log_budget_" });
  const logs = await openLogs(t.herd.bus, dir, ["Hill"]);
  let invalidEvents = 0;
  const off = t.herd.bus.subscribe((e) => {
    if (e.kind === "invalid" && e.server === "Hill") invalidEvents++;
  });
  const hostile = await TcpClient.connect(t.port("Hill"));
  const good = await TcpClient.connect(t.port("Hill"));
  const long = "\x80".repeat(500);
  let received = 0;
  try {
    // The good client: a student's typos among good commands, before, during and after.
    await good.send("IAMAT good +34.068930-118.445127 1700000000.1\nIAMAT oops\n");
    await good.replies(2, 10_000);
    const flood = "x\n".repeat(SHORT) + `${long}\n`.repeat(LONG);
    await hostile.send(flood);
    await good.send("WHATSAT good 10 1\nwhatsat good 10 1\n");
    await good.replies(4, 10_000);
    // Every hostile line is answered, in order.
    const replies = await hostile.replies(SHORT + LONG, 30_000);
    received = replies.length;
    assert.equal(replies[0], "? x\n");
    assert.equal(replies[SHORT], `? ${long}\n`);
    await good.send("IAMAT oops2\n");
    await good.replies(5, 10_000);
  } finally {
    await hostile.close();
    await good.close();
    // The DISCONNECT and the unmute line before it.
    await new Promise((r) => setTimeout(r, 100));
    off();
    await logs.close();
  }
  assert.equal(received, SHORT + LONG);
  assert.equal(invalidEvents, SHORT + LONG + 3, "every invalid line is still an event");

  const text = bytesToBinary(await Deno.readFile(`${dir}/Hill.log`));
  await Deno.remove(dir, { recursive: true });
  const lines = text.split("\n").filter((l) => l !== "");
  const conns = [...text.matchAll(/ CONNECT #(\d+)/g)].map((m) => m[1]);
  assert.equal(conns.length, 2);
  const [hostileId, goodId] = conns;
  const of = (id: string) => lines.filter((l) => new RegExp(` (IN|OUT|INVALID) #${id} `).test(l));

  // The good client: every line, reply and reason.
  const goodLines = of(goodId);
  assert.equal(goodLines.filter((l) => / IN #/.test(l)).length, 5);
  assert.equal(goodLines.filter((l) => / OUT #/.test(l)).length, 5);
  assert.equal(goodLines.filter((l) => / INVALID #/.test(l)).length, 3);

  // The hostile one: a bounded share, then muted; the unmute line counts what was left out.
  const hostileLines = of(hostileId);
  const hostileBytes = hostileLines.reduce((n, l) => n + l.length + 1, 0);
  assert.ok(
    hostileBytes < 2 * CONN_BURST,
    `${hostileBytes} log bytes for the hostile client (${text.length} in all)`,
  );
  assert.ok(text.length < 64 * 1024, `${text.length} bytes of log in all`);
  assert.equal(lines.filter((l) => l.includes(` MUTE #${hostileId} `)).length, 1);
  const unmute = lines.find((l) => l.includes(` UNMUTE #${hostileId} `));
  assert.ok(unmute, "an UNMUTE line when it left");
  const skipped = Number(/\((\d+) line\(s\) not logged\)/.exec(unmute)![1]);
  assert.equal(
    hostileLines.length + skipped,
    3 * (SHORT + LONG),
    "written + left out = IN, OUT and INVALID of every line",
  );
  const unmuteAt = lines.indexOf(unmute);
  assert.match(lines[unmuteAt + 1], new RegExp(` DISCONNECT #${hostileId} `));
});

const STALE = 5_000; // IAMATs a client sends again: every one a duplicate or stale here

Deno.test("log budget: a client re-sending old IAMATs cannot make the log outgrow what it sends; others are logged in full", async () => {
  await using t = await startSeedHerd();
  const dir = await Deno.makeTempDir({ prefix: "log_budget_stale_" });
  const logs = await openLogs(t.herd.bus, dir, ["Hill"]);
  let dropped = 0;
  const off = t.herd.bus.subscribe((e) => {
    if (e.kind === "location.dropped" && e.server === "Hill" && e.from === null) dropped++;
  });
  const hostile = await TcpClient.connect(t.port("Hill"));
  const good = await TcpClient.connect(t.port("Hill"));
  const newest = "IAMAT replayer +34.068930-118.445127 1700000001.5\n";
  const old = "IAMAT replayer +34.068930-118.445127 1700000000.5\n";
  let sent = newest.length;
  try {
    // The good client: a stale and a duplicate IAMAT of its own among good commands.
    await good.send(
      "IAMAT good +34.068930-118.445127 1700000000.2\n" +
        "IAMAT good +34.068930-118.445127 1700000000.1\n" +
        "IAMAT good +34.068930-118.445127 1700000000.2\n",
    );
    await good.replies(3, 10_000);
    await hostile.send(newest);
    await hostile.replies(1, 10_000);
    // Half duplicates of the newest record, half older ones: all dropped, all answered.
    let replay = "";
    for (let i = 0; i < STALE; i++) replay += i % 2 === 0 ? newest : old;
    sent += replay.length;
    await hostile.send(replay);
    const replies = await hostile.replies(STALE + 1, 30_000);
    assert.ok(replies.every((r) => r.startsWith("AT Hill ") && r.includes(" replayer ")));
    await good.send("IAMAT good +34.068930-118.445127 1700000000.1\n");
    await good.replies(4, 10_000);
  } finally {
    await hostile.close();
    await good.close();
    await new Promise((r) => setTimeout(r, 100));
    off();
    await logs.close();
  }
  assert.equal(dropped, STALE + 3, "every dropped IAMAT is still an event");

  const text = bytesToBinary(await Deno.readFile(`${dir}/Hill.log`));
  await Deno.remove(dir, { recursive: true });
  const lines = text.split("\n").filter((l) => l !== "");
  const [hostileId, goodId] = [...text.matchAll(/ CONNECT #(\d+)/g)].map((m) => m[1]);
  const of = (id: string, client: string) =>
    lines.filter((l) =>
      new RegExp(` (IN|OUT) #${id} `).test(l) ||
      new RegExp(` DROP \\w+ client .* ${client} `).test(l)
    );

  // The good client: every line, reply and drop.
  const goodLines = of(goodId, "good");
  assert.equal(goodLines.filter((l) => / IN #/.test(l)).length, 4);
  assert.equal(goodLines.filter((l) => / OUT #/.test(l)).length, 4);
  assert.equal(goodLines.filter((l) => / DROP /.test(l)).length, 3);

  // The replayer: its log share is bounded, far below what it sent (it used to be ~10x).
  const hostileBytes = of(hostileId, "replayer").reduce((n, l) => n + l.length + 1, 0);
  assert.ok(
    hostileBytes < 2 * CONN_BURST,
    `${hostileBytes} log bytes for the replaying client, which sent ${sent}`,
  );
  assert.ok(text.length < sent / 4, `${text.length} bytes of log in all for ${sent} sent`);
  assert.equal(lines.filter((l) => l.includes(` MUTE #${hostileId} `)).length, 1);
  const unmute = lines.find((l) => l.includes(` UNMUTE #${hostileId} `));
  assert.ok(unmute, "an UNMUTE line when it left");
  const skipped = Number(/\((\d+) line\(s\) not logged\)/.exec(unmute)![1]);
  assert.equal(
    of(hostileId, "replayer").length + skipped,
    3 * (STALE + 1) - 1,
    "written + left out = IN, OUT and DROP of every IAMAT (the first was accepted, no DROP)",
  );
});
