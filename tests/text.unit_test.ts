/** Text helpers (servers/text.ts): hex, random hex, an error as text, one terminal line. */

import assert from "node:assert/strict";
import { errText, oneLine, randomHex, toHex } from "../servers/text.ts";

Deno.test("text: hex of bytes and of an ArrayBuffer", () => {
  assert.deepEqual(toHex(new Uint8Array([0, 1, 15, 16, 171, 255])), "00010f10abff");
  assert.deepEqual(toHex(new Uint8Array([222, 173]).buffer), "dead");
  assert.deepEqual(toHex(new Uint8Array(0)), "");
});

Deno.test("text: random hex has the asked length and differs between calls", () => {
  const a = randomHex(16);
  assert.ok(/^[0-9a-f]{32}$/.test(a), a);
  assert.ok(randomHex(16) !== a);
});

Deno.test("text: an error's message, with its name on request; other values as text", () => {
  assert.deepEqual(errText(new TypeError("bad")), "bad");
  assert.deepEqual(errText(new TypeError("bad"), true), "TypeError: bad");
  assert.deepEqual(errText("plain"), "plain");
  assert.deepEqual(errText(undefined), "undefined");
});

Deno.test("oneLine: control characters escaped, everything else (tab, UTF-8 text) unchanged", () => {
  assert.equal(
    oneLine("a\nb\rc\x1b[2J\x00\x7f\x85\u2028"),
    "a\\nb\\rc\\u001b[2J\\u0000\\u007f\\u0085\\u2028",
  );
  assert.equal(oneLine("tab\there, café ✓"), "tab\there, café ✓");
});
