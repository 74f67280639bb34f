import assert from "node:assert/strict";
import {
  formatAt,
  formatInvalid,
  formatTimeDiff,
  formatWhatsatReply,
  iamatDiff,
  parseCommand,
  splitFields,
  tooFarAhead,
} from "../servers/protocol.ts";
import { INVALID_REASONS, type InvalidReason } from "../servers/reasons.ts";

Deno.test("fields split on the protocol's six whitespace bytes only", () => {
  assert.deepEqual(splitFields(" IAMAT\tk\r+1+2\f3\v"), ["IAMAT", "k", "+1+2", "3"]);
  // NBSP (0xA0) is not whitespace: it stays inside the field.
  assert.deepEqual(splitFields("IAMAT k\xa0x +1+2 3"), ["IAMAT", "k\xa0x", "+1+2", "3"]);
  assert.deepEqual(splitFields("   "), []);
  assert.deepEqual(splitFields(""), []);
});

Deno.test("field splitting: the single-space fast path agrees with the general rule", () => {
  // The rule written plainly: every maximal run of non-whitespace bytes is a field.
  const reference = (line: string) => line.match(/[^ \t\r\n\f\v]+/g) ?? [];
  const alphabet = ["a", "b", " ", " ", " ", "\t", "\r", "\n", "\f", "\v", "\xa0", "\x00"];
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < 20_000; i++) {
    let line = "";
    const len = Math.floor(next() * 12);
    for (let j = 0; j < len; j++) line += alphabet[Math.floor(next() * alphabet.length)];
    assert.deepEqual(splitFields(line), reference(line), JSON.stringify(line));
  }
});

Deno.test("IAMAT: valid forms parse with exact fields", () => {
  const c = parseCommand("IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503");
  assert.deepEqual(c, {
    verb: "IAMAT",
    client: "kiwi.cs.ucla.edu",
    location: "+34.068930-118.445127",
    time: "1621464827.959498503",
    lat: 34.06893,
    lng: -118.445127,
  });
  assert.deepEqual(parseCommand("IAMAT k +35-120 1").verb, "IAMAT");
  assert.deepEqual(parseCommand("IAMAT k +27.5916+086.5640 1.0").verb, "IAMAT");
  assert.deepEqual(parseCommand("\t IAMAT  k  +90-180  0 \r").verb, "IAMAT");
  assert.deepEqual(parseCommand("IAMAT k -90.000+180.0000 0").verb, "IAMAT");
  assert.deepEqual(parseCommand(`IAMAT ${"x".repeat(256)} +1+1 1`).verb, "IAMAT");
});

Deno.test("IAMAT: every malformed field is invalid", () => {
  const bad = [
    "iamat k +1+1 1", // verbs are case-sensitive
    "IAMAT k +1+1", // too few fields
    "IAMAT k +1+1 1 extra",
    "IAMAT k 1+1 1", // latitude needs a sign
    "IAMAT k +1 1",
    "IAMAT k +1.+1 1", // trailing dot
    "IAMAT k +.5+1 1",
    "IAMAT k +1+1 1.", // time: no trailing dot
    "IAMAT k +1+1 -1", // no sign
    "IAMAT k +1+1 1e9", // no exponent
    "IAMAT k +1+1 +1",
    "IAMAT k +91+0 1", // out of range
    "IAMAT k -90.0000001+0 1",
    "IAMAT k +0+180.5 1",
    "IAMAT k +90.00000000000000000001+0 1", // over 90 exactly, though a float would say 90
    "IAMAT k ++1+1 1",
    `IAMAT ${"x".repeat(257)} +1+1 1`, // client ID over 256 bytes
    "IAMAT k +1+1 １", // non-ASCII digits
  ];
  for (const line of bad) assert.deepEqual(parseCommand(line).verb, "INVALID", line);
});

Deno.test("WHATSAT: radius 0 < r ≤ 50 with fractions, bound integer 0..20", () => {
  assert.deepEqual(parseCommand("WHATSAT k 10 5"), {
    verb: "WHATSAT",
    client: "k",
    radiusKm: 10,
    bound: 5,
  });
  assert.deepEqual(parseCommand("WHATSAT k 0.5 0").verb, "WHATSAT");
  assert.deepEqual(parseCommand("WHATSAT k 50 20").verb, "WHATSAT");
  assert.deepEqual(parseCommand("WHATSAT k 50.000 020").verb, "WHATSAT");
  for (
    const line of [
      "WHATSAT k 0 5",
      "WHATSAT k 0.000 5",
      "WHATSAT k 50.001 5",
      "WHATSAT k 51 5",
      "WHATSAT k -1 5",
      "WHATSAT k 1- 5",
      "WHATSAT k 1. 5",
      "WHATSAT k 10 21",
      "WHATSAT k 10 -1",
      "WHATSAT k 10 2.5",
      "WHATSAT k 10",
      "whatsat k 10 5",
    ]
  ) assert.deepEqual(parseCommand(line).verb, "INVALID", line);
});

Deno.test("blank lines are BLANK; a client-sent AT is invalid", () => {
  assert.deepEqual(parseCommand("").verb, "BLANK");
  assert.deepEqual(parseCommand(" \t\r\f\v").verb, "BLANK");
  assert.deepEqual(
    parseCommand("AT Clark +0.263873386 kiwi +34.06-118.44 1520023934.9").verb,
    "INVALID",
  );
});

Deno.test("? replies trim outer whitespace and keep inner bytes", () => {
  assert.deepEqual(
    formatInvalid("  WHATSAT kiwi.cs.ucla.edu 1- 5 \r"),
    "? WHATSAT kiwi.cs.ucla.edu 1- 5\n",
  );
  assert.deepEqual(formatInvalid("a \t b\xff"), "? a \t b\xff\n");
});

Deno.test("time difference: exact, signed, nine digits, from integer nanoseconds", () => {
  assert.deepEqual(formatTimeDiff(1621464828223372889n, "1621464827.959498503"), "+0.263874386");
  assert.deepEqual(formatTimeDiff(1621464823000000000n, "1621464827.998127001"), "-4.998127001");
  assert.deepEqual(formatTimeDiff(5_000_000_000n, "5"), "+0.000000000");
  assert.deepEqual(formatTimeDiff(5_000_000_000n, "5.0000000000001"), "+0.000000000"); // no "-0"
  assert.deepEqual(formatTimeDiff(0n, "1700000000.5"), "-1700000000.500000000");
  // Longer fractions round half to even at the ninth digit.
  assert.deepEqual(formatTimeDiff(1_000_000_000n, "0.0000000005"), "+1.000000000"); // 0.9999999995 → even
  assert.deepEqual(formatTimeDiff(1_000_000_000n, "0.0000000015"), "+0.999999998");
  assert.deepEqual(formatTimeDiff(1_000_000_000n, "0.00000000151"), "+0.999999998");
  // 19-digit timestamps stay exact (a float would lose the last digits).
  assert.deepEqual(formatTimeDiff(1621464827959498504n, "1621464827.959498503"), "+0.000000001");
  assert.deepEqual(formatTimeDiff(99999999999999999999n, "0"), "+99999999999.999999999");
});

Deno.test("iamatDiff is tooFarAhead, then formatTimeDiff, in one: 40,000 random and edge times", () => {
  // The fast path (at most 15 whole digits, 9 fraction digits) against the exact BigInt paths.
  let seed = 0x1234567;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const digits = (n: number) => Array.from({ length: n }, () => String(rand(10))).join("");
  const reference = (r: bigint, t: string, max: number) =>
    tooFarAhead(t, r, max) ? undefined : formatTimeDiff(r, t);
  const clocks = [0n, 1n, 999_999_999n, 1_000_000_000n, 1764288000123456789n, 10n ** 23n];
  const bounds = [0, 1, 86400, 1e15, 2 ** 53 - 1];
  let checked = 0;
  const check = (r: bigint, t: string, max: number) => {
    assert.deepEqual(iamatDiff(r, t, max), reference(r, t, max), `${r} ${t} ${max}`);
    checked++;
  };
  for (let i = 0; i < 40_000; i++) {
    const r = rand(3) === 0
      ? clocks[rand(clocks.length)]
      : 1764288000000000000n + BigInt(rand(2_000_000_000)) * BigInt(rand(1_000_000_000));
    const max = bounds[rand(bounds.length)];
    const whole = rand(4) === 0
      ? "0".repeat(rand(3)) + digits(1 + rand(19))
      : String(r / 10n ** 9n + BigInt(rand(200_000)) - 100_000n);
    const frac = rand(4) === 0 ? "" : "." + digits(1 + rand(12));
    check(r, (whole.startsWith("-") ? "0" : whole) + frac, max);
  }
  // Exactly at the bound, a nanosecond either side, and the same second.
  for (const r of [1764288000123456789n, 1764288000000000000n, 5_000_000_000n]) {
    for (const max of [0, 1, 86400]) {
      for (const dn of [-1n, 0n, 1n]) {
        const c = r + BigInt(max) * 1_000_000_000n + dn;
        const t = `${c / 10n ** 9n}.${String(c % 10n ** 9n).padStart(9, "0")}`;
        check(r, t, max);
        check(r, t.replace(/0+$/, "").replace(/\.$/, ""), max);
      }
    }
  }
  assert.ok(checked > 40_000);
});

Deno.test("AT and WHATSAT layouts", () => {
  const r = {
    origin: "Hill",
    diff: "+0.263873386",
    client: "kiwi",
    location: "+34.06-118.44",
    time: "1.5",
  };
  assert.deepEqual(formatAt(r), "AT Hill +0.263873386 kiwi +34.06-118.44 1.5");
  assert.deepEqual(formatWhatsatReply("AT x", '{\n   "a" : 1\n}'), 'AT x\n{\n   "a" : 1\n}\n\n');
});

Deno.test("IAMAT times more than the allowed span ahead of the receive time are too far ahead", () => {
  const now = 1_700_000_000_123_456_789n;
  assert.ok(tooFarAhead("99999999999", now, 86400));
  assert.ok(!tooFarAhead("1700086400.123456789", now, 86400), "exactly at the limit is allowed");
  assert.ok(tooFarAhead("1700086400.1234567891", now, 86400), "a tenth of a nanosecond beyond");
  assert.ok(!tooFarAhead("1700086400.12345678900000", now, 86400));
  assert.ok(!tooFarAhead("0", now, 0));
  assert.ok(tooFarAhead("1700000000.123456790", now, 0));
  assert.ok(!tooFarAhead("1700000000.123456789", now, 0));
});

Deno.test("invalid commands say why, from a closed set; the verb they claimed is kept", () => {
  const table: [string, InvalidReason, "IAMAT" | "WHATSAT" | undefined][] = [
    ["iamat k +1+1 1", "unknown-verb", undefined],
    ["AT Clark +0.2 kiwi +34-118 1", "unknown-verb", undefined],
    ["HELLO", "unknown-verb", undefined],
    ["IAMAT k +1+1", "arity", "IAMAT"],
    ["IAMAT k +1+1 1 extra", "arity", "IAMAT"],
    ["WHATSAT k 10", "arity", "WHATSAT"],
    [`IAMAT ${"x".repeat(257)} +1+1 1`, "bad-client", "IAMAT"],
    [`WHATSAT ${"x".repeat(257)} 10 5`, "bad-client", "WHATSAT"],
    [`IAMAT k +1+1 ${"1".repeat(70_000)}`, "field-too-long", "IAMAT"], // caps hold at any --line-limit
    ["IAMAT k +91+0 1", "bad-location", "IAMAT"],
    ["IAMAT k 1+1 1", "bad-location", "IAMAT"],
    ["IAMAT k +90.00000000000000000001+0 1", "bad-location", "IAMAT"],
    ["IAMAT k +1+1 1e9", "bad-time", "IAMAT"],
    ["IAMAT k +1+1 -1", "bad-time", "IAMAT"],
    ["IAMAT k +91+0 x", "bad-time", "IAMAT"], // the time is checked first
    ["WHATSAT k 0 5", "bad-radius", "WHATSAT"],
    ["WHATSAT k 50.001 5", "bad-radius", "WHATSAT"],
    ["WHATSAT k 1- 5", "bad-radius", "WHATSAT"],
    ["WHATSAT k 10 21", "bad-bound", "WHATSAT"],
    ["WHATSAT k 10 2.5", "bad-bound", "WHATSAT"],
  ];
  for (const [line, reason, claimed] of table) {
    const cmd = parseCommand(line);
    assert.deepEqual(cmd.verb, "INVALID", line);
    if (cmd.verb !== "INVALID") continue;
    assert.deepEqual([cmd.reason, cmd.claimed], [reason, claimed], line);
    assert.ok(INVALID_REASONS.includes(cmd.reason), line);
    assert.deepEqual(formatInvalid(line), `? ${line}\n`, "the reply is unchanged");
  }
});

/** The time difference and the far-ahead check computed on the whole decimal, as BigInt allows. */
function referenceDiff(receiveNs: bigint, time: string): string {
  const [int, frac = ""] = time.split(".");
  const scale = Math.max(9, frac.length);
  const c = BigInt(int + frac) * 10n ** BigInt(scale - frac.length);
  let diff = receiveNs * 10n ** BigInt(scale - 9) - c;
  const negative = diff < 0n;
  if (negative) diff = -diff;
  const divisor = 10n ** BigInt(scale - 9);
  let ns = diff / divisor;
  const twice = (diff % divisor) * 2n;
  if (twice > divisor || (twice === divisor && ns % 2n === 1n)) ns += 1n;
  const sign = negative && ns !== 0n ? "-" : "+";
  return `${sign}${ns / 1_000_000_000n}.${(ns % 1_000_000_000n).toString().padStart(9, "0")}`;
}

function referenceFar(time: string, receiveNs: bigint, maxAheadS: number): boolean {
  const [int, frac = ""] = time.split(".");
  const scale = BigInt(Math.max(9, frac.length));
  const limit = (receiveNs + BigInt(maxAheadS) * 1_000_000_000n) * 10n ** (scale - 9n);
  return BigInt(int + frac) * 10n ** (scale - BigInt(frac.length)) > limit;
}

Deno.test("time difference and far-ahead check: long times give the whole decimal's exact answer", () => {
  const receive = 1_700_000_000_123_456_789n;
  const digits = (n: number, from = "0123456789") =>
    Array.from({ length: n }, () => from[Math.floor(Math.random() * from.length)]).join("");
  const times: string[] = [
    // Ties and near-ties at the tenth digit and beyond, on both sides of the receive time.
    "1700000000.1234567885",
    "1700000000.12345678850000000000000",
    "1700000000.12345678850000000000001",
    "1700000000.12345678849999999999999",
    "1700000000.123456789" + "0".repeat(500),
    "1700000000.123456789" + "0".repeat(500) + "1",
    "1700000000.1234567895" + "0".repeat(300),
    "1700000000.1234567895" + "0".repeat(300) + "7",
    "1700000000.1234567894" + "9".repeat(300),
    "1700000001.1234567885",
    "1699999999.9999999995",
    "0".repeat(1000) + "1700000000.5",
    "0".repeat(1000),
    "1700086400.123456789" + "0".repeat(200) + "1", // just past a day ahead
    "1700086400.123456789" + "0".repeat(200), // exactly a day ahead: not past it
  ];
  for (let i = 0; i < 2000; i++) {
    const int = ["1700000000", "1700000001", "1699999999", "1700086400", "0", digits(12)][i % 6];
    const tail = digits(1 + Math.floor(Math.random() * 40), i % 3 === 0 ? "05" : "0123456789");
    times.push(`${int}.${tail}`);
  }
  for (const t of times) {
    const far = referenceFar(t, receive, 86400);
    assert.equal(tooFarAhead(t, receive, 86400), far, t.slice(0, 80));
    if (!far) assert.equal(formatTimeDiff(receive, t), referenceDiff(receive, t), t.slice(0, 80));
  }
  // Whole parts past any clock plus any bound, leading zeros aside, are far ahead without BigInt.
  assert.equal(tooFarAhead("1" + "0".repeat(65_000), receive, 86400), true);
  assert.equal(tooFarAhead("0".repeat(65_000) + "1", receive, 86400), false);
  assert.equal(tooFarAhead("99999999999999999999", receive, Number.MAX_SAFE_INTEGER), true);
});
