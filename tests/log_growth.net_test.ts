/**
 * Valid commands cannot make a server's log outgrow what it receives by more than a small
 * constant, over real TCP: a WHATSAT's OUT line is its AT line and a summary of the JSON body
 * (bytes, status, results), never the body; an AT line's long fields (a 65 KB location) are
 * written in full once per record (IN, ACCEPT) and elided, with their length, in OUT lines.
 * The adversarial review's three reproductions (offline answers, a Google legacy answer of 20
 * results, a 65 KB record asked for with `WHATSAT b 1 0`), in text and JSON logs: each under
 * {@linkcode BOUND} log bytes per byte received (they were 277, 702 and 4,668). A normal client's IAMAT and WHATSAT are logged readably, in text and in JSON.
 */

import assert from "node:assert/strict";
import { clientTime, startSeedHerd, TcpClient } from "./_helpers/net.ts";
import { type FakeMode, startFakeGoogle } from "./_helpers/fake_google.ts";
import { openLogs } from "../servers/log.ts";
import { createPlacesProvider } from "../servers/places/select.ts";
import { binaryToBytes, bytesToBinary } from "../servers/lines.ts";
import type { HerdOptions } from "../servers/herd.ts";

/**
 * Log bytes per byte received, at most, for any stream of valid commands answered by Places: the
 * shortest WHATSAT (`WHATSAT b 1 0`, 14 bytes) logs IN, OUT and PLACES lines of about 330 bytes
 * in text (measured 23.6 per byte), about 535 as JSON objects (38.2), whatever its record holds.
 */
const BOUND = { text: 32, json: 48 };

const KIWI = "+34.068930-118.445127";
/** A location of 65,004 bytes: valid, and echoed in every AT line that names its record. */
const BIG = "+1." + "0".repeat(32_499) + "+1." + "0".repeat(32_499);

/** What {@linkcode flood} measured. */
interface Growth {
  sent: number;
  received: number;
  replies: number;
  /** Bytes Hill's log grew by while the flood was sent and answered. */
  logged: number;
  /** Hill's whole log (binary string). */
  log: string;
}

/**
 * Starts the seed herd (with `overrides`), logs Hill to a temporary file, runs `setup` on one
 * connection, then sends `payload` pipelined on a second one, half-closes it and reads every
 * reply until the server closes; returns how much Hill's log grew meanwhile.
 */
async function flood(
  overrides: Partial<HerdOptions>,
  setup: string,
  payload: string,
  format: "text" | "json" = "text",
): Promise<Growth> {
  await using t = await startSeedHerd(overrides);
  const dir = await Deno.makeTempDir({ prefix: "log_growth_" });
  const path = `${dir}/Hill.log`;
  const logs = await openLogs(t.herd.bus, dir, ["Hill"], { format });
  try {
    const first = await TcpClient.connect(t.port("Hill"));
    try {
      await first.send(setup);
      await first.replies(setup.split("\n").length - 1, 10_000);
    } finally {
      await first.close();
    }
    await new Promise((r) => setTimeout(r, 100));
    await logs.flush();
    const before = (await Deno.stat(path)).size;
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: t.port("Hill") });
    const bytes = binaryToBytes(payload);
    const writing = (async () => {
      let off = 0;
      while (off < bytes.length) off += await conn.write(bytes.subarray(off));
      await conn.closeWrite();
    })();
    // Counted as it comes (a WHATSAT's reply ends at LF LF): no 60 MB string.
    let received = 0;
    let replies = 0;
    let prev = 0;
    const buf = new Uint8Array(1 << 16);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      for (let i = 0; i < n; i++) {
        const b = buf[i];
        if (b === 10 && prev === 10) replies++;
        prev = b;
      }
      received += n;
    }
    await writing;
    conn.close();
    await new Promise((r) => setTimeout(r, 100));
    await logs.close();
    const log = bytesToBinary(await Deno.readFile(path));
    return { sent: bytes.length, received, replies, logged: log.length - before, log };
  } finally {
    await logs.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** {@linkcode flood} with Google legacy answers, from a fake answering in `mode`. */
async function legacyFlood(mode: FakeMode, setup: string, payload: string): Promise<Growth> {
  await using fake = startFakeGoogle("LOG-KEY");
  fake.mode = mode;
  const places = createPlacesProvider({
    places: "legacy",
    apiKey: "LOG-KEY",
    baseUrl: fake.origin,
  });
  return await flood({ places }, setup, payload);
}

/** Asserts the growth per byte sent is under the bound, naming the numbers. */
function assertBounded(g: Growth, what: string, format: "text" | "json" = "text"): void {
  const ratio = g.logged / g.sent;
  assert.ok(
    ratio <= BOUND[format],
    `${what}: ${g.sent} B sent, ${g.received} B of replies, log +${g.logged} B: ` +
      `${ratio.toFixed(1)} log bytes per byte received (bound ${BOUND[format]})`,
  );
}

Deno.test("log growth: pipelined WHATSATs answered offline log a summary, not the body", async () => {
  const n = 400;
  const g = await flood(
    {},
    `IAMAT kiwi.cs.ucla.edu ${KIWI} ${clientTime()}\n`,
    "WHATSAT kiwi.cs.ucla.edu 50 20\n".repeat(n),
  );
  assert.equal(g.replies, n);
  assertBounded(g, "offline");
});

Deno.test("log growth: WHATSATs answered by Google legacy with 20 results log a summary", async () => {
  const n = 200;
  const g = await legacyFlood(
    "ok",
    `IAMAT kiwi.cs.ucla.edu ${KIWI} ${clientTime()}\n`,
    "WHATSAT kiwi.cs.ucla.edu 50 20\n".repeat(n),
  );
  assert.equal(g.replies, n);
  assert.ok(g.received > n * 2000, `${g.received} B of replies`);
  assert.ok(!g.log.includes("Legacy Place"), "no result of the body is in the log");
  assert.match(g.log, / OUT #\d+ AT Hill .* \[JSON \d+ bytes, status=OK, results=20\]\n/);
  assertBounded(g, "Google legacy");
});

Deno.test("log growth: a 65 KB location is logged once per record, not in every WHATSAT's OUT line", async () => {
  const n = 1000;
  const g = await flood(
    {},
    `IAMAT b ${BIG} ${clientTime()}\n`,
    "WHATSAT b 1 0\n".repeat(n),
  );
  assert.equal(g.replies, n);
  assert.ok(g.received > n * BIG.length, `${g.received} B of replies`);
  assertBounded(g, "big record, WHATSAT b 1 0");
  // Written whole in its IN and ACCEPT lines; nowhere else in the log.
  assert.equal(g.log.split(BIG).length - 1, 2);
  const out = g.log.split("\n").filter((l) => / OUT #\d+ AT Hill /.test(l));
  assert.equal(out.length, n + 1);
  for (const l of out) assert.ok(l.includes("...[65004 bytes]"), l.slice(0, 200));
});

/** A normal client's session: an IAMAT, then a WHATSAT for it. */
async function normalSession(format: "text" | "json"): Promise<string[]> {
  const time = "1700000000.123456789";
  const g = await flood(
    {},
    `IAMAT kiwi.cs.ucla.edu ${KIWI} ${time}\n`,
    "WHATSAT kiwi.cs.ucla.edu 10 3\n",
    format,
  );
  assert.equal(g.replies, 1);
  return g.log.split("\n").filter((l) => l !== "");
}

Deno.test("log growth: a normal client's IAMAT and WHATSAT are logged readably (text)", async () => {
  const lines = await normalSession("text");
  const find = (re: RegExp) => {
    const l = lines.find((l) => re.test(l));
    assert.ok(l, `a line matching ${re}:\n${lines.join("\n")}`);
    return l;
  };
  const at = String
    .raw`AT Hill [+-]\d+\.\d{9} kiwi\.cs\.ucla\.edu \+34\.068930-118\.445127 1700000000\.123456789`;
  find(/ IN #\d+ IAMAT kiwi\.cs\.ucla\.edu \+34\.068930-118\.445127 1700000000\.123456789$/);
  find(new RegExp(` ACCEPT client ${at}$`));
  find(new RegExp(` OUT #\\d+ ${at}$`));
  find(/ IN #\d+ WHATSAT kiwi\.cs\.ucla\.edu 10 3$/);
  find(/ PLACES offline status=OK results=3 /);
  const out = find(new RegExp(` OUT #\\d+ ${at} \\[JSON (\\d+) bytes, status=OK, results=3\\]$`));
  assert.ok(Number(/\[JSON (\d+) bytes/.exec(out)![1]) > 100);
});

Deno.test("log growth: a normal client's IAMAT and WHATSAT are logged readably (JSON)", async () => {
  const lines = (await normalSession("json")).map((l) => JSON.parse(l));
  const outs = lines.filter((l) => l.kind === "reply.out");
  assert.equal(outs.length, 2);
  const at =
    /^AT Hill [+-]\d+\.\d{9} kiwi\.cs\.ucla\.edu \+34\.068930-118\.445127 1700000000\.123456789\n$/;
  assert.match(outs[0].reply, at);
  assert.equal(outs[0].body, undefined);
  assert.match(outs[1].reply, at);
  assert.equal(outs[1].body.status, "OK");
  assert.equal(outs[1].body.results, 3);
  assert.ok(outs[1].body.bytes > 100);
  assert.ok(lines.some((l) => l.kind === "whatsat" && l.count === 3));
});

Deno.test("log growth: JSON logs summarise WHATSAT bodies and elide long fields too", async () => {
  const n = 300;
  const g = await flood(
    {},
    `IAMAT b ${BIG} ${clientTime()}\n`,
    "WHATSAT b 1 0\n".repeat(n),
    "json",
  );
  assert.equal(g.replies, n);
  assertBounded(g, "big record, JSON log", "json");
  const outs = g.log.split("\n").filter((l) => l.includes('"kind":"reply.out"'));
  assert.equal(outs.length, n + 1);
  for (const l of outs) {
    assert.ok(JSON.parse(l).reply.includes("...[65004 bytes]"), l.slice(0, 200));
  }
});

Deno.test("log growth: WHATSATs that Google refuses log their error, still bounded", async () => {
  const n = 200;
  const g = await legacyFlood(
    "echoKey",
    `IAMAT k ${KIWI} ${clientTime()}\n`,
    "WHATSAT k 1 1\n".repeat(n),
  );
  assert.equal(g.replies, n);
  assert.match(
    g.log,
    / OUT #\d+ AT Hill \S+ k \S+ \S+ \[JSON \d+ bytes, status=INVALID_REQUEST, results=0\]\n/,
  );
  assertBounded(g, "Google refusing");
});
