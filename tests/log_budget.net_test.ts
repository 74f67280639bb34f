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
