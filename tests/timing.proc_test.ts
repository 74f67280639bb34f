/**
 * Exact under real clients' timing, over real TCP: far-future timestamps, commands on one
 * connection taking effect in order, and read-your-writes across the herd.
 */

import assert from "node:assert/strict";
import {
  exchange,
  freePorts,
  seedConfig,
  splitReplies,
  startSeedHerd,
  TcpClient,
  waitFor,
} from "./_helpers/net.ts";
import { Herd } from "../servers/herd.ts";
import { readYourWrites } from "./_helpers/ryw.ts";
import { ProcessHerd } from "./_helpers/procs.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";

const UCLA = "+34.068930-118.445127";
const NAMES = ["Hill", "Jaquez", "Smith", "Campbell", "Singleton"];

/** One exchange, with a deadline generous enough for a loaded 2-core machine. */
function ask(port: number, data: string): Promise<string> {
  return exchange(port, data, 20_000);
}

/** Now plus `s` seconds, as a protocol time with nanoseconds. */
function timeIn(s: number): string {
  const ns = Temporal.Now.instant().epochNanoseconds + BigInt(Math.round(s * 1e9));
  return `${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, "0")}`;
}

Deno.test("a far-future IAMAT is invalid and does not pin the client: a later real one is accepted everywhere", async () => {
  await using t = await startSeedHerd();
  for (const time of ["99999999999", timeIn(86_400 + 60)]) {
    assert.deepEqual(
      await ask(t.port("Hill"), `IAMAT alice +0+0 ${time}\n`),
      `? IAMAT alice +0+0 ${time}\n`,
    );
  }
  // Within the limit (a client whose clock runs an hour fast) is still a report.
  const ahead = timeIn(3600);
  assert.match(await ask(t.port("Smith"), `IAMAT bob ${UCLA} ${ahead}\n`), /^AT Smith -/);
  const real = timeIn(0);
  assert.match(
    await ask(t.port("Hill"), `IAMAT alice ${UCLA} ${real}\n`),
    new RegExp(`^AT Hill \\+\\d+\\.\\d{9} alice \\${UCLA} ${real}\n$`),
  );
  for (const name of NAMES) {
    const reply = await ask(t.port(name), "WHATSAT alice 10 1\n");
    assert.ok(reply.startsWith(`AT Hill `) && reply.includes(` alice ${UCLA} ${real}\n`), reply);
  }
});

Deno.test("a peer's record far ahead of the receiver's clock is accepted as its origin accepted it", async () => {
  // Hill runs in its own herd object with a clock allowance of 100 years (like a server whose
  // clock is far ahead); its neighbours keep the default day and must not re-check its records.
  const config = seedConfig(freePorts(5));
  const base = {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: "test-secret-0123456789",
  };
  const skewed = new Herd(config, { ...base, maxFutureS: 3_153_600_000, only: ["Hill"] });
  const rest = new Herd(config, { ...base, only: NAMES.filter((n) => n !== "Hill") });
  const port = (name: string) => config.servers.find((s) => s.name === name)!.port;
  await skewed.start();
  await rest.start();
  try {
    await waitFor(
      () =>
        [skewed, rest].every((h) =>
          h.snapshot().servers.every((s) => !s.running || s.links.every((l) => l.up))
        ),
      5000,
      "links up",
    );
    const future = timeIn(10 * 86_400);
    assert.deepEqual(
      await ask(port("Smith"), `IAMAT carol ${UCLA} ${future}\n`),
      `? IAMAT carol ${UCLA} ${future}\n`,
      "the receiving server checks",
    );
    assert.match(await ask(port("Hill"), `IAMAT carol ${UCLA} ${future}\n`), /^AT Hill -/);
    for (const name of NAMES) {
      await waitFor(
        async () => (await ask(port(name), "WHATSAT carol 10 1\n")).includes(future),
        20_000,
        `carol's record at ${name}`,
      );
    }
  } finally {
    await skewed.stop();
    await rest.stop();
  }
});

Deno.test("pipelined WHATSAT before IAMAT of a new client: the WHATSAT never sees the later IAMAT", async () => {
  await using t = await startSeedHerd();
  const iamat = `IAMAT newc ${UCLA} 1520023934.918963997`;
  // The course's case, in one write, and with a WHATSAT after the IAMAT that must see it.
  const text = await ask(
    t.port("Hill"),
    `WHATSAT newc 10 1\n${iamat}\nWHATSAT newc 10 1\n`,
  );
  const replies = splitReplies(text);
  assert.deepEqual(replies.length, 3, text);
  assert.deepEqual(replies[0], "? WHATSAT newc 10 1\n");
  assert.match(replies[1], /^AT Hill \+\d+\.\d{9} newc /);
  assert.ok(replies[2].startsWith(replies[1]), `the later WHATSAT sees the IAMAT: ${replies[2]}`);
  // Same on a server whose links are up and the record is new to all of it.
  const text2 = await ask(
    t.port("Singleton"),
    `WHATSAT newd 10 1\nIAMAT newd ${UCLA} 1520023934.918963997\n`,
  );
  assert.deepEqual(splitReplies(text2)[0], "? WHATSAT newd 10 1\n");
});

Deno.test("pipelined WHATSAT of a known client is answered from the record before a later IAMAT", async () => {
  await using t = await startSeedHerd();
  const old = timeIn(-10);
  const at = await ask(t.port("Smith"), `IAMAT known ${UCLA} ${old}\n`);
  const text = await ask(
    t.port("Smith"),
    `WHATSAT known 10 1\nIAMAT known +10+10 ${timeIn(0)}\nWHATSAT known 10 1\n`,
  );
  const replies = splitReplies(text);
  assert.deepEqual(replies.length, 3, text);
  assert.ok(replies[0].startsWith(at), `first WHATSAT answered from the old record: ${replies[0]}`);
  assert.ok(replies[2].startsWith(replies[1]), `the last one sees the new record: ${replies[2]}`);
});

Deno.test("an unknown client's WHATSAT is still answered by a record from another connection or a peer", async () => {
  await using t = await startSeedHerd();
  // Another connection to the same server.
  const waiting = TcpClient.connect(t.port("Jaquez"));
  const c = await waiting;
  await c.send("WHATSAT other 10 1\n");
  await new Promise((r) => setTimeout(r, 20));
  const at = await ask(t.port("Jaquez"), `IAMAT other ${UCLA} ${timeIn(0)}\n`);
  const [reply] = await c.replies(1, 20_000);
  assert.ok(reply.startsWith(at), `satisfied by the other connection's record: ${reply}`);
  await c.close();
  // A peer: the WHATSAT at Singleton waits for the record flooded from Hill.
  const d = await TcpClient.connect(t.port("Singleton"));
  await d.send("WHATSAT viapeer 10 1\n");
  await new Promise((r) => setTimeout(r, 20));
  const at2 = await ask(t.port("Hill"), `IAMAT viapeer ${UCLA} ${timeIn(0)}\n`);
  const [reply2] = await d.replies(1, 20_000);
  assert.ok(reply2.startsWith(at2), `satisfied by the peer's record: ${reply2}`);
  await d.close();
});

const TRIES = 1000;

/**
 * TRIES read-your-writes tries from Hill, read one hop (Jaquez, Smith) and two hops (Singleton,
 * Campbell) away; prints the outcome (plus `notes()`) and fails on any stale answer.
 */
async function noneStale(
  what: string,
  port: (name: string) => number,
  notes: () => Promise<string>,
): Promise<void> {
  const r = await readYourWrites(port, "Hill", ["Jaquez", "Smith", "Singleton", "Campbell"], TRIES);
  console.log(`${what}: ${JSON.stringify(r.stale)} in ${Math.round(r.ms)} ms${await notes()}`);
  assert.deepEqual(
    r.stale,
    { Jaquez: 0, Smith: 0, Singleton: 0, Campbell: 0 },
    r.examples.join("; "),
  );
}

Deno.test(`read-your-writes in one process: ${TRIES} tries, WHATSAT one and two hops away right after the AT reply, 0 stale`, async () => {
  const t = await startSeedHerd({ receiptWaitMs: 2000 }); // see the processes test below
  try {
    await noneStale("in-process", t.port, () => Promise.resolve(""));
  } finally {
    await t.close();
  }
});

Deno.test(`read-your-writes across server processes: ${TRIES} tries, one and two hops, 0 stale`, async () => {
  // The bound is generous here: the suite runs on a loaded 2-core machine, where a receipt
  // across three processes can take longer than the default 50 ms; a stale answer within it
  // would be a real bug. Receipts later than that bound are counted below.
  await using herd = await ProcessHerd.create({
    args: () => ["--memory", "--receipt-wait-ms", "2000"],
  });
  await herd.startAll();
  await herd.waitLinksUp();
  await noneStale("processes", (n) => herd.port(n), async () => {
    await new Promise((r) => setTimeout(r, 200)); // logs are written every 50 ms
    const late = (await Promise.all(herd.names.map((n) => herd.log(n))))
      .flatMap((l) => l.split("\n").filter((x) => x.includes(" LATE RECEIPT ")));
    return `; ${late.length} late receipts ${late.slice(0, 5).join(" | ")}`;
  });
});

Deno.test("a neighbour that stops answering delays an AT reply only by the bounded receipt wait, and it is counted", async () => {
  await using herd = await ProcessHerd.create({
    args: () => ["--memory", "--receipt-wait-ms", "100"],
  });
  await herd.startAll(["Hill", "Jaquez", "Smith"]);
  await herd.waitLinksUp();
  const jaquez = herd.procs.get("Jaquez")!;
  // Frozen, not dead: its socket stays open, so the link stays up until the heartbeat
  // timeout (3 s): every record meanwhile waits for a receipt that cannot come.
  Deno.kill(jaquez.child.pid, "SIGSTOP");
  try {
    const started = performance.now();
    const reply = await ask(herd.port("Hill"), `IAMAT frozen ${UCLA} ${timeIn(0)}\n`);
    const waited = performance.now() - started;
    assert.match(reply, /^AT Hill /);
    // Bounded well below the 3 s it would take to notice the frozen peer.
    assert.ok(waited < 2500, `the reply took ${waited} ms`);
    await waitFor(
      async () => (await herd.log("Hill")).includes("LATE RECEIPT frozen from Jaquez"),
      20_000,
      "the late receipt in Hill's log",
    );
    // Smith answered: it holds the record (the wait was for Jaquez only).
    assert.ok((await ask(herd.port("Smith"), "WHATSAT frozen 10 0\n")).startsWith(reply));
  } finally {
    Deno.kill(jaquez.child.pid, "SIGCONT");
  }
});
