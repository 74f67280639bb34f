/**
 * Limits from one place: every record a server accepts from a client fits
 * every line it later travels in. A maximal (64 KiB) IAMAT used to make a 65,562-byte peer line,
 * over the peer limit: links flapped forever and nothing behind it flowed.
 */

import assert from "node:assert/strict";
import { exchange, startSeedHerd, TcpClient, waitFor } from "./_helpers/net.ts";
import { Herd } from "../servers/herd.ts";
import { parseConfig } from "../servers/config.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";
import { freePorts } from "./_helpers/net.ts";
import { asciiJson, type HerdEvent } from "../servers/events.ts";
import {
  MAX_CLIENT_ID,
  MAX_CLIENT_LINE,
  MAX_LOCATION,
  MAX_PEER_LINE,
  MAX_RECORD_FIELDS,
  MAX_RECORD_JSON,
  MAX_TIME,
} from "../servers/limits.ts";
import { formatTimeDiff, parseCommand } from "../servers/protocol.ts";
import { validateRecord } from "../servers/record.ts";

const LINE = 64 * 1024;

/** An IAMAT line of exactly `LINE` bytes (LF excluded): 256-byte client ID, a long time. */
function maximalIamat(): { line: string; client: string } {
  const client = "m".repeat(255) + "x";
  const location = "+34.068930-118.445127";
  const head = `IAMAT ${client} ${location} `;
  // A time in the past with a long fraction fills the rest.
  const time = "1700000000." + "1".repeat(LINE - head.length - "1700000000.".length);
  const line = head + time;
  assert.deepEqual(line.length, LINE);
  return { line, client };
}

Deno.test("limits: a 64 KiB IAMAT, then 1,000 normal ones, reach every server of the herd", async () => {
  const t = await startSeedHerd({ whatsatGraceMs: 0 });
  const downs: HerdEvent[] = [];
  const off = t.herd.bus.subscribe((e) => {
    if (e.kind === "link.down") downs.push(e);
  });
  const c = await TcpClient.connect(t.port("Hill"));
  try {
    const { line, client } = maximalIamat();
    await c.send(line + "\n");
    await c.waitUntil((r) => r.endsWith("\n"), 10_000);
    assert.ok(c.received.startsWith(`AT Hill `), c.received.slice(0, 80));
    const now = Math.floor(Date.now() / 1000);
    let batch = "";
    for (let i = 0; i < 1000; i++) batch += `IAMAT n.${i} +10.${i}-20.5 ${now}.${i}\n`;
    await c.send(batch);
    await c.waitUntil((r) => r.split("\n").length > 1001, 20_000);
    const names = t.config.servers.map((s) => s.name);
    await waitFor(
      () =>
        names.every((n) => {
          const store = t.herd.servers.get(n)!.store;
          return store.get(client) !== undefined && store.get("n.999") !== undefined &&
            store.size === 1001;
        }),
      30_000,
      "the maximal record and 1,000 more at all five servers",
    ).catch((err) => {
      const sizes = names.map((n) => `${n}=${t.herd.servers.get(n)!.store.size}`).join(" ");
      throw new Error(`${err.message}: ${sizes}; link downs: ${downs.length}`);
    });
    // Replicated byte for byte.
    const stored = t.herd.servers.get("Singleton")!.store.get(client)!;
    assert.ok(`IAMAT ${stored.client} ${stored.location} ${stored.time}` === line, "byte for byte");
    assert.deepEqual(downs.length, 0, `no link went down: ${JSON.stringify(downs.slice(0, 3))}`);
  } finally {
    off();
    await c.close();
    await t.close();
  }
});

Deno.test("limits: over-limit client ID and fields get `?`, whatever the line limit", async () => {
  // A server run with a longer line limit still caps the fields, so its records fit peer lines.
  const [port, other] = freePorts(2);
  const config = parseConfig({
    servers: { A: { port, neighbors: ["B"] }, B: { port: other } },
  });
  const herd = new Herd(config, {
    ...SERVER_DEFAULTS,
    lineLimit: 256 * 1024,
    places: createOfflineProvider(),
    secret: "limits-test-secret-0123456789",
    only: ["A"],
    whatsatGraceMs: 0,
  });
  await herd.start();
  try {
    const now = Math.floor(Date.now() / 1000);
    const cases = [
      `IAMAT ${"c".repeat(257)} +1+2 ${now}`,
      `IAMAT big.loc +1.${"5".repeat(70 * 1024)}+2 ${now}`,
      `IAMAT big.time +1+2 ${now}.${"5".repeat(70 * 1024)}`,
      // Each field within its own cap, but together more than one 64 KiB line can carry.
      `IAMAT big.both +1.${"5".repeat(40 * 1024)}+2 ${now}.${"5".repeat(40 * 1024)}`,
    ];
    for (const line of cases) {
      const reply = await exchange(port, line + "\n", 10_000);
      // Compared as a boolean: a mismatch would print 70 KiB twice.
      assert.ok(reply === `? ${line}\n`, `${line.slice(0, 40)}: got ${reply.slice(0, 60)}`);
    }
    // The largest accepted: 256 bytes of client ID.
    const ok = await exchange(port, `IAMAT ${"c".repeat(256)} +1+2 ${now}\n`);
    assert.ok(ok.startsWith("AT A "), ok.slice(0, 40));
    assert.deepEqual(herd.servers.get("A")!.store.size, 1);
  } finally {
    await herd.stop();
  }
});

Deno.test("limits: an overlong line is echoed from its first non-whitespace byte; an overlong blank line gets no reply (adversarial review)", async () => {
  const t = await startSeedHerd({ whatsatGraceMs: 0 });
  try {
    const port = t.port("Hill");
    const command = `IAMAT kiwi ${"x".repeat(70 * 1024)}`;
    const session = [
      // Leading whitespace past the 1 KiB echo: the reply used to be a bare `? `.
      " \t\f\v\r".repeat(600) + command,
      // Blank, 70 KiB of it: no reply (it got `? `).
      " ".repeat(70 * 1024),
      "\t\r".repeat(40 * 1024),
      "HI",
    ].join("\n") + "\n";
    const reply = await exchange(port, session, 10_000);
    assert.deepEqual(reply, `? ${command.slice(0, 1024)}\n? HI\n`);
  } finally {
    await t.close();
  }
});

Deno.test("limits: the largest records fit a peer line and an observer line", () => {
  const now = BigInt(Date.now()) * 1_000_000n;
  const worst = [
    // The longest time (its diff is as long), the longest location, the longest client ID
    // (bytes the observer's JSON escapes six-fold), each with the others at their shortest.
    { client: "x", location: "+0+0", time: "9".repeat(MAX_TIME) },
    { client: "x", location: `+0.${"1".repeat(MAX_LOCATION - 5)}+0`, time: "0" },
    {
      client: "\xff".repeat(MAX_CLIENT_ID),
      location: "+0+0",
      time: `1.${"5".repeat(MAX_RECORD_FIELDS - MAX_CLIENT_ID - 4 - 2)}`,
    },
  ];
  for (const r of worst) {
    const line = `IAMAT ${r.client} ${r.location} ${r.time}`;
    assert.ok(line.length <= MAX_CLIENT_LINE, `${line.length}`);
    const cmd = parseCommand(line);
    assert.deepEqual(cmd.verb, "IAMAT", line.slice(0, 40));
    const record = { origin: "O".repeat(64), diff: formatTimeDiff(now, r.time), ...r };
    assert.ok(validateRecord(record) !== undefined, "a peer accepts it");
    const peerLine = `R ${Number.MAX_SAFE_INTEGER} ${record.origin} ${record.diff} ` +
      `${record.client} ${record.location} ${record.time}`;
    assert.ok(peerLine.length <= MAX_PEER_LINE, `peer line ${peerLine.length} > ${MAX_PEER_LINE}`);
    const json = asciiJson(record);
    assert.ok(json.length <= MAX_RECORD_JSON, `record JSON ${json.length} > ${MAX_RECORD_JSON}`);
  }
});

Deno.test("a 64 KiB IAMAT (fields at their caps) gets the same answer with LF and with CRLF", async () => {
  // Found by an adversarial review: the CR of CRLF counted toward the 64 KiB limit, so the
  // largest valid IAMAT was refused when sent with CRLF (a CR before the LF is whitespace).
  await using t = await startSeedHerd();
  const time = String(Math.floor(Date.now() / 1000));
  const fieldsTotal = 65_528;
  const answers: string[] = [];
  for (const [i, end] of ["\n", "\r\n"].entries()) {
    const client = `crlf${i}`;
    const location = "+1." + "1".repeat(fieldsTotal - client.length - time.length - 5) + "+1";
    const line = `IAMAT ${client} ${location} ${time}`;
    assert.equal(line.length, 65_536);
    answers.push((await exchange(t.port("Hill"), line + end, 10_000)).slice(0, 9));
  }
  assert.deepEqual(answers, ["AT Hill +", "AT Hill +"]);
  // One byte more than the limit, CR or not, is still too long.
  const over = `IAMAT crlf2 +1.${"1".repeat(fieldsTotal - 5 - time.length - 5 + 1)}+1 ${time}`;
  assert.equal(over.length, 65_537);
  for (const end of ["\n", "\r\n"]) {
    assert.match(await exchange(t.port("Hill"), over + end, 10_000), /^\? IAMAT crlf2 /);
  }
});
