/**
 * servers/json_where.ts: the first fault of a JSON text, by line and column, agreeing with
 * `JSON.parse` on what is valid.
 */

import assert from "node:assert/strict";
import { jsonFault } from "../servers/json_where.ts";

Deno.test("jsonFault: the first character no JSON text could have there, 1-based", () => {
  assert.equal(jsonFault('{"a": [1, 2.5e-3, true, null, "x\\u00e9"], "b": {}}'), undefined);
  assert.deepEqual(jsonFault('{"a": b}'), { line: 1, column: 7, end: false });
  assert.deepEqual(jsonFault('{\n  "a": 1,\n}'), { line: 3, column: 1, end: false });
  assert.deepEqual(jsonFault("[1 2]"), { line: 1, column: 4, end: false });
  assert.deepEqual(jsonFault('{"a": tru}'), { line: 1, column: 10, end: false });
  assert.deepEqual(jsonFault('{"a": "x'), { line: 1, column: 9, end: true });
  assert.deepEqual(jsonFault(""), { line: 1, column: 1, end: true });
  assert.deepEqual(jsonFault("01"), { line: 1, column: 2, end: false });
  assert.deepEqual(jsonFault("[".repeat(100_000)), { line: 1, column: 100_001, end: true });
});

Deno.test("jsonFault: valid exactly when JSON.parse accepts, over 30,000 mutated texts", () => {
  const seeds = [
    '{"servers": {"Hill": {"port": 12000, "neighbors": ["Jaquez"]}}, "secret": "s3cr\\"t"}',
    '[0, -1, 1.5, -0.25e+10, 2E-3, true, false, null, "\\\\\\/\\b\\f\\n\\r\\t\\u0041", [], {}]',
    ' { "a" : [ { } , [ ] ] } ',
  ];
  const alphabet = '{}[],:"\\ -+.0123456789eEtrufalsn\t\nx\u00e9';
  let seed = 12345;
  const rand = (k: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % k;
  };
  for (let round = 0; round < 30_000; round++) {
    let t = seeds[rand(seeds.length)];
    for (let m = 1 + rand(3); m > 0; m--) {
      const at = rand(t.length + 1);
      const op = rand(3);
      const c = alphabet[rand(alphabet.length)];
      t = op === 0
        ? t.slice(0, at) + c + t.slice(at)
        : op === 1
        ? t.slice(0, at) + t.slice(at + 1)
        : t.slice(0, at) + c + t.slice(at + 1);
    }
    let valid = true;
    try {
      JSON.parse(t);
    } catch {
      valid = false;
    }
    assert.equal(jsonFault(t) === undefined, valid, JSON.stringify(t));
  }
});
