/**
 * The wire formats (servers/wire.ts): every peer and observer message parses back to what was
 * formatted, and what is not a message is told apart from what is a message with bad fields
 * (a bad record is skipped and the link goes on; garbage drops the link).
 */

import assert from "node:assert/strict";
import {
  BUSY_LINE,
  encodeRecords,
  formatCaughtUp,
  formatChallenge,
  formatEvent,
  formatHello,
  formatLinkPort,
  formatLinkPortQuery,
  formatProof,
  formatReceipt,
  formatRecord,
  formatRecords,
  formatSkip,
  formatState,
  formatSync,
  formatWelcome,
  isBusy,
  isInvalidReply,
  isRefused,
  isWelcome,
  parseChallenge,
  parseHello,
  parseLinkLine,
  parseLinkPort,
  parseLinkPortQuery,
  parseObserverLine,
  parseProof,
  PING_LINE,
  proofText,
  recordFieldsAt,
  recordJson,
  REFUSED_LINE,
} from "../servers/wire.ts";
import { binaryToBytes } from "../servers/lines.ts";

const NONCE = "0123456789abcdef0123456789abcdef";
const line = (text: string) => {
  assert.ok(text.endsWith("\n") && text.indexOf("\n") === text.length - 1, `one line: ${text}`);
  return text.slice(0, -1);
};

Deno.test("wire: handshake lines parse back to what was formatted", () => {
  const hello = { role: "observer" as const, from: "dash-1", to: "Hill", nonce: NONCE };
  assert.deepEqual(parseHello(line(formatHello(hello))), hello);
  const challenge = { acceptor: "Hill", dialler: "Jaquez", nonce: NONCE, mac: "ab".repeat(32) };
  assert.deepEqual(parseChallenge(line(formatChallenge(challenge))), challenge);
  assert.deepEqual(parseProof(line(formatProof("cd".repeat(32)))), "cd".repeat(32));
  assert.ok(isBusy(line(BUSY_LINE)));
  assert.ok(isRefused(line(REFUSED_LINE)));
  assert.deepEqual(formatWelcome("peer", "Hill", "Jaquez"), "HERD2 WELCOME Hill Jaquez\n");
  assert.deepEqual(formatWelcome("observer", "Hill", "dash"), "HERD2 WATCHING Hill\n");
  assert.ok(isWelcome("HERD2 WELCOME Hill Jaquez", "peer", "Hill", "Jaquez"));
  assert.ok(!isWelcome("HERD2 WELCOME Jaquez Hill", "peer", "Hill", "Jaquez"), "names swapped");
  assert.ok(!isWelcome("HERD2 WATCHING Hill", "peer", "Hill", "Jaquez"), "wrong role");
  assert.ok(isInvalidReply("? HERD2 HELLO peer A B x"));
  assert.ok(!isInvalidReply(line(BUSY_LINE)));
});

Deno.test("wire: malformed handshake lines are not taken for messages", () => {
  for (
    const bad of [
      `HERD2 HELLO peer A B ${NONCE.slice(1)}`, // short nonce
      `HERD2 HELLO king A B ${NONCE}`, // unknown role
      `HERD2 HELLO peer A B ${NONCE} extra`,
      `HERD2 HELLO peer ${"x".repeat(65)} B ${NONCE}`, // name too long
      `HERD1 HELLO peer A B ${NONCE}`,
    ]
  ) assert.deepEqual(parseHello(bad), undefined, bad);
  assert.deepEqual(parseChallenge(`HERD2 CHALLENGE A B ${NONCE.toUpperCase()} mac`), undefined);
  assert.deepEqual(parseChallenge(`HERD2 CHALLENGE A B ${NONCE}`), undefined);
  assert.deepEqual(parseProof("HERD2 PROOF"), undefined);
  assert.deepEqual(parseProof("HERD2 PROOF a b"), undefined);
});

Deno.test("wire: the link-port question and answer parse back; anything else is no answer", () => {
  assert.equal(parseLinkPortQuery(formatLinkPortQuery("Hill").slice(0, -1)), "Hill");
  assert.equal(parseLinkPort(formatLinkPort("Hill", 40123).slice(0, -1), "Hill"), 40123);
  for (const bad of ["HERD2 LINKPORT", "HERD2 LINKPORT a b", "HERD2 LINKPORT two\tnames"]) {
    assert.equal(parseLinkPortQuery(bad), undefined, bad);
  }
  for (
    const bad of [
      "? HERD2 LINKPORT Hill", // an older server
      "HERD2 LINKPORT Jaquez 40123", // another server's answer
      "HERD2 LINKPORT Hill 0",
      "HERD2 LINKPORT Hill 65536",
      "HERD2 LINKPORT Hill 040123",
      "HERD2 LINKPORT Hill +1",
      "HERD2 LINKPORT Hill",
      "HERD2 LINKPORT Hill 1 2",
    ]
  ) assert.equal(parseLinkPort(bad, "Hill"), undefined, bad);
});

Deno.test("wire: the MAC text binds role, direction, both names and both nonces", () => {
  const base = proofText("peer", "dialler", "A", "B", NONCE, NONCE);
  assert.deepEqual(base, JSON.stringify(["HERD2", "peer", "dialler", "A", "B", NONCE, NONCE]));
  const variants = [
    proofText("observer", "dialler", "A", "B", NONCE, NONCE),
    proofText("peer", "acceptor", "A", "B", NONCE, NONCE),
    proofText("peer", "dialler", "B", "A", NONCE, NONCE),
    proofText("peer", "dialler", "A B", "", NONCE, NONCE), // fields cannot run into each other
  ];
  assert.deepEqual(new Set([base, ...variants]).size, variants.length + 1);
});

Deno.test("wire: link messages parse back to what was formatted", () => {
  const sync = { epoch: "e1f2", head: 42, yourEpoch: "-", mark: 0 };
  assert.deepEqual(parseLinkLine(line(formatSync(sync))), { type: "SYNC", ...sync });
  const record = {
    origin: "Hill",
    diff: "-0.000000001",
    client: "k\xff",
    location: "+34.068930-118.445127",
    time: "1479413884.392014450",
  };
  assert.deepEqual(parseLinkLine(line(formatRecord(7, record))), { type: "R", seq: 7, record });
  assert.deepEqual(parseLinkLine(line(formatSkip(9))), { type: "S", seq: 9 });
  assert.deepEqual(parseLinkLine(line(formatReceipt(3, 5))), { type: "A", from: 3, to: 5 });
  assert.deepEqual(parseLinkLine(line(PING_LINE)), { type: "PING" });
  assert.deepEqual(parseLinkLine(line(formatCaughtUp(12))), { type: "CAUGHTUP" });
});

Deno.test("wire: a record line with a bad sequence number is still a record (skipped, link kept)", () => {
  const m = parseLinkLine("R 9007199254740993 Hill +0.1 k +1+1 1");
  assert.deepEqual(m?.type, "R");
  assert.deepEqual(m?.type === "R" ? m.seq : "?", undefined);
  assert.deepEqual(parseLinkLine("R x Hill +0.1 k +1+1 1")?.type, "R");
});

Deno.test("wire: lines that are no link message at all are undefined (the link drops)", () => {
  for (
    const bad of [
      "R 1 Hill +0.1 k +1+1", // six fields
      "S",
      "S -1",
      "A 1",
      "A 1 x",
      "PING now",
      "SYNC e 1 - x",
      "SYNC e x - 1",
      "CAUGHTUP",
      "IAMAT k +1+1 1",
      "HERD2 WELCOME M F",
      "   ",
    ]
  ) assert.deepEqual(parseLinkLine(bad), undefined, bad);
});

Deno.test("wire: observer lines parse back to what was formatted, CR tolerated", () => {
  const state = {
    server: {
      name: "Hill",
      host: "127.0.0.1",
      port: 1,
      running: true,
      connections: 0,
      records: 1,
      neighbors: ["Jaquez"],
      links: [{ peer: "Jaquez", up: true }],
    },
    records: [],
    snapshot: 1,
    observer: "dash",
    places: "offline",
  };
  assert.deepEqual(parseObserverLine(line(formatState(state))), { type: "STATE", state });
  const r = { client: "k\xff", origin: "Hill", diff: "+0.1", location: "+1+1", time: "1" };
  const records = line(formatRecords([recordJson(r), recordJson(r)]));
  assert.ok(/^[\x20-\x7e]*$/.test(records), "pure ASCII on the wire");
  assert.deepEqual(parseObserverLine(records + "\r"), { type: "RECORDS", records: [r, r] });
  assert.deepEqual(parseObserverLine("RECORDS {}"), { type: "RECORDS", records: [] });
  const event = { kind: "server.down", t: 1, server: "Hill" };
  assert.deepEqual(parseObserverLine(line(formatEvent(event))), { type: "EVENT", event });
  assert.deepEqual(parseObserverLine("HELLO {}"), undefined);
  assert.deepEqual(parseObserverLine("STATE"), undefined);
  let threw = false;
  try {
    parseObserverLine("EVENT {nope");
  } catch (err) {
    threw = err instanceof SyntaxError;
  }
  assert.ok(threw, "malformed JSON throws a SyntaxError");
});

Deno.test("wire: encodeRecords gives the bytes of head, formatRecord of each record, and tail", () => {
  let seed = 7;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  // Binary strings: any byte, high ones included.
  const field = () =>
    Array.from({ length: rand(30) }, () => String.fromCharCode(rand(256))).join("");
  const reused = new Uint8Array(300);
  const seqs = [0, 1, 9, 10, 99, 100, 12345, 999_999_999, 1_000_000_000, Number.MAX_SAFE_INTEGER];
  for (let round = 0; round < 500; round++) {
    const records = Array.from({ length: rand(6) }, () => ({
      seq: rand(3) === 0 ? seqs[rand(seqs.length)] : rand(1_000_000),
      origin: field(),
      diff: field(),
      client: field(),
      location: field(),
      time: field(),
    }));
    const head = rand(2) ? "" : `A ${rand(100)} ${rand(100)}\n`;
    const tail = rand(2) ? "" : `S ${rand(1000)}\n`;
    const text = head + records.map((r) => formatRecord(r.seq, r)).join("") + tail;
    const want = binaryToBytes(text);
    assert.deepEqual(encodeRecords(head, records, tail), want, `round ${round}`);
    // Into a reused buffer (dirty from the last round) when it has room, else a new one.
    const got = encodeRecords(head, records, tail, reused);
    assert.deepEqual(got, want, `round ${round}, reused buffer`);
    assert.equal(got.buffer === reused.buffer, want.length <= reused.length);
    reused.fill(0x55);
  }
});

Deno.test("wire: recordFieldsAt finds the fields parseLinkLine gives for every plain R line, and declines every other form", () => {
  const at = new Int32Array(8);
  const tokens = [
    "R",
    "7",
    "007",
    "9007199254740991",
    "9007199254740993",
    "x1",
    "Hill",
    "+0.5",
    "kiwi",
    "k\xe9",
    "+1+2",
    "3",
    "1700000000.5",
    "",
    "-1",
    "R",
  ];
  const seps = [" ", " ", " ", " ", "  ", "\t", "\r", "\v", "\f"];
  let seed = 13;
  const pick = <T>(xs: readonly T[]) => xs[(seed = (seed * 16807) % 2147483647) % xs.length];
  let plain = 0;
  for (let n = 0; n < 20_000; n++) {
    // Every other line is seven fields joined by single spaces: mostly plain.
    const even = n % 2 === 0;
    const fields = Array.from(
      { length: even ? 7 : 5 + (n % 5) },
      (_, i) => i === 0 ? "R" : pick(tokens),
    );
    let text = fields.map((f, i) => (i === 0 ? "" : even ? " " : pick(seps)) + f).join("");
    if (n % 7 === 0) text = pick(seps) + text;
    if (n % 11 === 0) text += pick(seps);
    // Inside a larger buffer, so positions are absolute.
    const bytes = binaryToBytes(`xx\n${text}\nyy`);
    const seq = recordFieldsAt(bytes, 3, 3 + text.length, at);
    const m = parseLinkLine(text);
    const isPlain = /^R( [^ \t\r\n\v\f]+){6}$/.test(text) && /^R \d+ /.test(text);
    if (seq < 0) {
      assert.ok(
        !isPlain || m?.type !== "R" || m.seq === undefined,
        `declined ${JSON.stringify(text)}`,
      );
      continue;
    }
    plain++;
    assert.ok(isPlain, `plain: ${JSON.stringify(text)}`);
    assert.ok(m?.type === "R", JSON.stringify(text));
    assert.equal(seq, m.seq);
    const field = (k: number) => bytesToText(bytes.subarray(at[k], at[k + 1] - 1));
    assert.deepEqual(
      { origin: field(2), diff: field(3), client: field(4), location: field(5), time: field(6) },
      m.record,
    );
    assert.equal(at[7], 3 + text.length + 1);
  }
  assert.ok(plain > 500, `${plain} plain lines generated`);
});

const bytesToText = (b: Uint8Array) => String.fromCharCode(...b);
