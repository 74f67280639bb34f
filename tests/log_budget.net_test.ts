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
import type { HerdEvent } from "../servers/events.ts";

const SHORT = 10_000; // `x` lines
const LONG = 400; // lines of 500 bytes 0x80: 2,000 log bytes each, escaped, in IN and in OUT

/** What {@linkcode loggedPair} saw: Hill's log, and the two clients' connection ids. */
interface PairLog {
  text: string;
  lines: string[];
  hostileId: string;
  goodId: string;
  /** Events of Hill's that `count` matched. */
  counted: number;
}

/**
 * Runs `exchange` with a hostile and a good client of Hill (connected in that order) while Hill
 * logs to a temporary file; returns the log once both have left.
 */
async function loggedPair(
  prefix: string,
  count: (e: HerdEvent) => boolean,
  exchange: (hostile: TcpClient, good: TcpClient) => Promise<void>,
): Promise<PairLog> {
  await using t = await startSeedHerd();
  const dir = await Deno.makeTempDir({ prefix });
  const logs = await openLogs(t.herd.bus, dir, ["Hill"]);
  let counted = 0;
  const off = t.herd.bus.subscribe((e) => {
    if (e.server === "Hill" && count(e)) counted++;
  });
  const hostile = await TcpClient.connect(t.port("Hill"));
  const good = await TcpClient.connect(t.port("Hill"));
  try {
    await exchange(hostile, good);
  } finally {
    await hostile.close();
    await good.close();
    // The DISCONNECT and the unmute line before it.
    await new Promise((r) => setTimeout(r, 100));
    off();
    await logs.close();
  }
  const text = bytesToBinary(await Deno.readFile(`${dir}/Hill.log`));
  await Deno.remove(dir, { recursive: true });
  const lines = text.split("\n").filter((l) => l !== "");
  const conns = [...text.matchAll(/ CONNECT #(\d+)/g)].map((m) => m[1]);
  assert.equal(conns.length, 2);
  return { text, lines, hostileId: conns[0], goodId: conns[1], counted };
}

/**
 * The hostile client's share: under two bursts, one MUTE, and an UNMUTE right before its
 * DISCONNECT that counts every line left out (`written` + left out = `all`).
 */
function assertMuted(log: PairLog, written: string[], all: number, what: string): void {
  const { lines, hostileId } = log;
  const bytes = written.reduce((n, l) => n + l.length + 1, 0);
  assert.ok(bytes < 2 * CONN_BURST, `${bytes} log bytes for the hostile client`);
  assert.equal(lines.filter((l) => l.includes(` MUTE #${hostileId} `)).length, 1);
  const unmute = lines.find((l) => l.includes(` UNMUTE #${hostileId} `));
  assert.ok(unmute, "an UNMUTE line when it left");
  const skipped = Number(/\((\d+) line\(s\) not logged\)/.exec(unmute)![1]);
  assert.equal(written.length + skipped, all, `written + left out = ${what}`);
  assert.match(lines[lines.indexOf(unmute) + 1], new RegExp(` DISCONNECT #${hostileId} `));
}

Deno.test("log budget: a client streaming invalid lines cannot fill the log; others are logged in full", async () => {
  const long = "\x80".repeat(500);
  let received = 0;
  const log = await loggedPair(
    "log_budget_",
    (e) => e.kind === "invalid",
    async (hostile, good) => {
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
    },
  );
  assert.equal(received, SHORT + LONG);
  assert.equal(log.counted, SHORT + LONG + 3, "every invalid line is still an event");
  const of = (id: string) =>
    log.lines.filter((l) => new RegExp(` (IN|OUT|INVALID) #${id} `).test(l));

  // The good client: every line, reply and reason.
  const goodLines = of(log.goodId);
  assert.equal(goodLines.filter((l) => / IN #/.test(l)).length, 5);
  assert.equal(goodLines.filter((l) => / OUT #/.test(l)).length, 5);
  assert.equal(goodLines.filter((l) => / INVALID #/.test(l)).length, 3);

  // The hostile one: a bounded share, then muted; the unmute line counts what was left out.
  assert.ok(log.text.length < 64 * 1024, `${log.text.length} bytes of log in all`);
  assertMuted(log, of(log.hostileId), 3 * (SHORT + LONG), "IN, OUT and INVALID of every line");
});

const STALE = 5_000; // IAMATs a client sends again: every one a duplicate or stale here

Deno.test("log budget: a client re-sending old IAMATs cannot make the log outgrow what it sends; others are logged in full", async () => {
  const newest = "IAMAT replayer +34.068930-118.445127 1700000001.5\n";
  const old = "IAMAT replayer +34.068930-118.445127 1700000000.5\n";
  let sent = newest.length;
  const dropped = (e: HerdEvent) => e.kind === "location.dropped" && e.from === null;
  const log = await loggedPair("log_budget_stale_", dropped, async (hostile, good) => {
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
  });
  assert.equal(log.counted, STALE + 3, "every dropped IAMAT is still an event");
  const of = (id: string, client: string) =>
    log.lines.filter((l) =>
      new RegExp(` (IN|OUT) #${id} `).test(l) ||
      new RegExp(` DROP \\w+ client .* ${client} `).test(l)
    );

  // The good client: every line, reply and drop.
  const goodLines = of(log.goodId, "good");
  assert.equal(goodLines.filter((l) => / IN #/.test(l)).length, 4);
  assert.equal(goodLines.filter((l) => / OUT #/.test(l)).length, 4);
  assert.equal(goodLines.filter((l) => / DROP /.test(l)).length, 3);

  // The replayer: its log share is bounded, far below what it sent (it used to be ~6 times it).
  assert.ok(log.text.length < sent / 4, `${log.text.length} bytes of log in all for ${sent} sent`);
  assertMuted(
    log,
    of(log.hostileId, "replayer"),
    3 * (STALE + 1) - 1,
    "IN, OUT and DROP of every IAMAT (the first was accepted: no DROP)",
  );
});
