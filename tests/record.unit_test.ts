/**
 * The record rules (servers/record.ts): exact time order, the exact location grammar and ranges,
 * and field-by-field validation of a peer's record. The tie rule is in store.unit_test.ts (the
 * store applies it) and record_rules.net_test.ts (the dashboard and the demo follow it).
 */

import assert from "node:assert/strict";
import {
  compareTimes,
  isDiff,
  isField,
  isTime,
  parseLocation,
  validateRecord,
  validFieldsAt,
} from "../servers/record.ts";
import { MAX_CLIENT_ID, MAX_DIFF, MAX_RECORD_FIELDS, MAX_SERVER_NAME } from "../servers/limits.ts";

Deno.test("times compare exactly as decimals", () => {
  assert.deepEqual(compareTimes("1.50", "1.5"), 0);
  assert.deepEqual(compareTimes("01", "1.0"), 0);
  assert.ok(compareTimes("10", "9.999999999999") > 0);
  assert.ok(compareTimes("1621464827.959498503", "1621464827.959498504") < 0);
  assert.ok(compareTimes("1621464827.9594985031", "1621464827.959498503") > 0);
});

Deno.test("location parse is exact at the range edges", () => {
  assert.deepEqual(parseLocation("+90.000-180.000"), { lat: 90, lng: -180 });
  assert.deepEqual(parseLocation("+90.0001-180"), undefined);
  assert.deepEqual(parseLocation("+0900+0"), undefined);
  assert.deepEqual(parseLocation("+0090+0"), { lat: 90, lng: 0 });
  assert.deepEqual(parseLocation("+00.5-0180.0000"), { lat: 0.5, lng: -180 });
  assert.deepEqual(parseLocation("+1+2 "), undefined);
  assert.deepEqual(parseLocation("+1.+2"), undefined);
  assert.deepEqual(parseLocation("+1-"), undefined);
});

Deno.test("location parse agrees with the rule written as a regular expression", () => {
  // The grammar and exact range rule, spelled out with big decimals instead of a scanner.
  const grammar = /^([+-])(\d+)(?:\.(\d+))?([+-])(\d+)(?:\.(\d+))?$/;
  const within = (int: string, frac = "", limit: number) => {
    const scale = 10n ** BigInt(frac.length);
    return BigInt(int) * scale + BigInt(frac || "0") <= BigInt(limit) * scale;
  };
  const reference = (text: string) => {
    const m = grammar.exec(text);
    if (!m || !within(m[2], m[3], 90) || !within(m[5], m[6], 180)) return undefined;
    return {
      lat: Number(`${m[1]}${m[2]}${m[3] ? "." + m[3] : ""}`),
      lng: Number(`${m[4]}${m[5]}${m[6] ? "." + m[6] : ""}`),
    };
  };
  let seed = 11;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const pick = (items: string[]) => items[Math.floor(next() * items.length)];
  const int = () =>
    pick(["0", "00", "1", "9", "09", "18", "89", "90", "090", "91", "179", "180", "181"]);
  const frac = () => pick(["", "", ".0", ".000", ".5", ".0001", ".", ".9"]);
  const noise = ["+", "-", ".", "0", "1", "x", " ", "\xa0", ""];
  let valid = 0;
  for (let i = 0; i < 50_000; i++) {
    let text = pick(["+", "-"]) + int() + frac() + pick(["+", "-"]) + int() + frac();
    if (next() < 0.3) {
      // A character replaced, dropped or added somewhere.
      const at = Math.floor(next() * (text.length + 1));
      text = text.slice(0, at) + pick(noise) + text.slice(at + (next() < 0.5 ? 1 : 0));
    }
    const want = reference(text);
    if (want) valid++;
    assert.deepEqual(parseLocation(text), want, JSON.stringify(text));
  }
  assert.ok(valid > 10_000, `only ${valid} valid locations generated`);
});

Deno.test("location values are exactly what Number parses of their text, however many digits", () => {
  // parseLocation computes a coordinate's value while it scans (its digits over a power of ten
  // when both are exact doubles), and parses the text only past 15 digits: the two must agree
  // to the last bit, sign of zero included, on both sides of that line.
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const digits = (n: number) => Array.from({ length: n }, () => Math.floor(next() * 10)).join("");
  const coordinate = (limit: number) => {
    const int = String(Math.floor(next() * limit)).padStart(1 + Math.floor(next() * 3), "0");
    const n = Math.floor(next() * 26);
    return (next() < 0.5 ? "+" : "-") + int + (n === 0 ? "" : "." + digits(n));
  };
  const edges = ["-0+0", "-0.000-00.0", "+89.999999999999999999+179.99999999999", "-0.1+0.3"];
  let fallbacks = 0;
  for (let i = 0; i < 30_000; i++) {
    const lat = i < edges.length ? "" : coordinate(90);
    const text = i < edges.length ? edges[i] : lat + coordinate(180);
    const mid = i < edges.length ? text.slice(1).search(/[+-]/) + 1 : lat.length;
    const got = parseLocation(text);
    assert.ok(got, text);
    assert.ok(Object.is(got.lat, Number(text.slice(0, mid))), `${text} lat ${got.lat}`);
    assert.ok(Object.is(got.lng, Number(text.slice(mid))), `${text} lng ${got.lng}`);
    if (text.length - mid > 17) fallbacks++;
  }
  assert.ok(fallbacks > 1_000, `only ${fallbacks} long coordinates generated`);
});

Deno.test("peer records are validated field by field", () => {
  const ok = { origin: "Hill", diff: "-0.500000000", client: "k", location: "+1+2", time: "3" };
  assert.ok(validateRecord(ok));
  assert.deepEqual(validateRecord({ ...ok, diff: "0.5" }), undefined);
  assert.deepEqual(validateRecord({ ...ok, location: "+100+2" }), undefined);
  assert.deepEqual(validateRecord({ ...ok, time: "3." }), undefined);
  assert.deepEqual(validateRecord({ ...ok, client: "a b" }), undefined);
});

Deno.test("a record checked in its bytes is valid exactly when its decoded fields are, with the same coordinates", () => {
  // validFieldsAt runs on the bytes of a link's plain R line (fields non-empty, no whitespace):
  // it must accept exactly what validateRecord accepts of the same fields decoded (one char per
  // byte), coordinates included to the last bit, or a peer could store what a client could not
  // send (or lose what it could).
  let seed = 11;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)];
  const digits = (n: number) => Array.from({ length: n }, () => Math.floor(next() * 10)).join("");
  // Near-misses of each field's grammar, and bytes above 0x7f.
  const junk = ["x", ".", "+", "-", "0", "9", "\xff", "\x80", "..", "e5", "_"];
  const mutate = (s: string) => {
    if (next() < 0.7) return s;
    const i = Math.floor(next() * (s.length + 1));
    const r = next();
    if (r < 0.4) return s.slice(0, i) + pick(junk) + s.slice(i);
    if (r < 0.8 && s.length > 1) return s.slice(0, i) + s.slice(i + 1);
    return s.slice(0, i) + pick(junk) + s.slice(i + 1);
  };
  const coordinate = (limit: number) =>
    pick(["+", "-"]) +
    String(Math.floor(next() * (limit + 2))).padStart(1 + Math.floor(next() * 3), "0") +
    (next() < 0.2 ? "" : "." + digits(1 + Math.floor(next() * 20)));
  const long = (n: number) => "1".repeat(n);
  const cases: string[][] = [
    // At and past each cap.
    ["O".repeat(MAX_SERVER_NAME), "+0.000000000", "k", "+1+2", "3"],
    ["O".repeat(MAX_SERVER_NAME + 1), "+0.000000000", "k", "+1+2", "3"],
    ["Hill", "+" + long(MAX_DIFF - 11) + ".000000000", "k", "+1+2", "3"],
    ["Hill", "+" + long(MAX_DIFF - 10) + ".000000000", "k", "+1+2", "3"],
    ["Hill", "+0.000000000", "k".repeat(MAX_CLIENT_ID), "+1+2", "3"],
    ["Hill", "+0.000000000", "k".repeat(MAX_CLIENT_ID + 1), "+1+2", "3"],
    ["Hill", "+0.000000000", "k", "+1+2", long(MAX_RECORD_FIELDS - 5)],
    ["Hill", "+0.000000000", "k", "+1+2", long(MAX_RECORD_FIELDS - 4)],
    ["Hill", "+0.000000000", "k", "+90+180", "3"],
    ["Hill", "+0.000000000", "k", "+90.0000001+180", "3"],
    ["Hill", "+0.000000000", "k", "-0+0", "3"],
  ];
  let valid = 0;
  for (let i = 0; i < 40_000; i++) {
    const f = i < cases.length ? cases[i] : [
      mutate(pick(["Hill", "Singleton", "a.b"])),
      mutate(pick(["+", "-"]) + digits(1 + Math.floor(next() * 3)) + "." + digits(9)),
      mutate("k" + digits(1 + Math.floor(next() * 8))),
      mutate(coordinate(90) + coordinate(180)),
      mutate(
        digits(1 + Math.floor(next() * 12)) +
          (next() < 0.5 ? "" : "." + digits(1 + Math.floor(next() * 9))),
      ),
    ];
    if (f.some((x) => x === "")) continue;
    const [origin, diff, client, location, time] = f;
    const line = f.join(" ");
    const bytes = new Uint8Array(line.length);
    for (let k = 0; k < line.length; k++) bytes[k] = line.charCodeAt(k);
    const at = [0];
    for (const x of f) at.push(at[at.length - 1] + x.length + 1);
    const got = validFieldsAt(
      bytes,
      at[0],
      at[1] - 1,
      at[1],
      at[2] - 1,
      at[2],
      at[3] - 1,
      at[3],
      at[4] - 1,
      at[4],
      at[5] - 1,
    );
    const want = validateRecord({ origin, diff, client, location, time });
    assert.equal(got === undefined, want === undefined, line.slice(0, 120));
    if (want !== undefined) {
      valid++;
      assert.ok(Object.is(got!.lat, want.lat) && Object.is(got!.lng, want.lng), line.slice(0, 120));
    }
  }
  assert.ok(
    valid > 5_000 && valid < 35_000,
    `${valid} valid of 40,000: the cases do not probe both sides`,
  );
});

Deno.test("the field scanners agree with the rules written as regular expressions", () => {
  // The grammar of each field, as the regular expressions the scanners replaced.
  const rules: [string, (s: string) => boolean, RegExp][] = [
    ["time", isTime, /^(\d+)(?:\.(\d+))?$/],
    ["field", isField, /^[^ \t\r\n\f\v]+$/],
    ["diff", isDiff, /^[+-]\d+\.\d{9}$/],
  ];
  let seed = 5;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const pick = (items: string[]) => items[Math.floor(next() * items.length)];
  // Near misses of every rule: digits, signs, dots, each kind of whitespace, bytes past ASCII.
  const chars = ["0", "9", "5", ".", "+", "-", "a", " ", "\t", "\n", "\v", "\f", "\r", "\x00"];
  const more = ["\x08", "\x0e", "\x1f", "\x85", "\xa0", "\xff", "/", ":", "\u0660", "\u2028"];
  const seeds = ["", "1", "1.", ".5", "1700000000.5", "+0.263873386", "-12.000000000", "kiwi"];
  const count = new Map<string, number>();
  for (let i = 0; i < 60_000; i++) {
    let text = pick(seeds);
    const edits = Math.floor(next() * 4);
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(next() * (text.length + 1));
      const c = next() < 0.8 ? pick(chars) : pick(more);
      text = text.slice(0, at) + c + text.slice(at + (next() < 0.4 ? 1 : 0));
    }
    if (next() < 0.1) text = text.repeat(2);
    for (const [name, scan, rule] of rules) {
      const want = rule.test(text);
      if (want) count.set(name, (count.get(name) ?? 0) + 1);
      assert.deepEqual(scan(text), want, `${name} ${JSON.stringify(text)}`);
    }
  }
  for (const [name] of rules) {
    assert.ok((count.get(name) ?? 0) > 2_000, `only ${count.get(name)} valid ${name}s generated`);
  }
});

Deno.test("compareTimes agrees with exact bigint arithmetic on random decimals", () => {
  let seed = 42;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const digits = (n: number) => Array.from({ length: n }, () => String(rand(10))).join("");
  const make = () => {
    const int = "0".repeat(rand(3)) + digits(1 + rand(4));
    return rand(3) === 0 ? int : `${int}.${digits(1 + rand(6))}`;
  };
  const exact = (t: string) => {
    const [i, f = ""] = t.split(".");
    return BigInt(i + f.padEnd(12, "0"));
  };
  for (let k = 0; k < 5000; k++) {
    const a = make();
    const b = rand(4) === 0 ? a + (a.includes(".") ? "0" : ".0") : make();
    const want = exact(a) === exact(b) ? 0 : exact(a) < exact(b) ? -1 : 1;
    assert.deepEqual(Math.sign(compareTimes(a, b)), want, `${a} vs ${b}`);
  }
});
