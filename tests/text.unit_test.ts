/** Text helpers (servers/text.ts): hex, random hex, an error as text. */

import { assert, assertEquals } from "./_helpers/assert.ts";
import { errText, randomHex, toHex } from "../servers/text.ts";

Deno.test("text: hex of bytes and of an ArrayBuffer", () => {
  assertEquals(toHex(new Uint8Array([0, 1, 15, 16, 171, 255])), "00010f10abff");
  assertEquals(toHex(new Uint8Array([222, 173]).buffer), "dead");
  assertEquals(toHex(new Uint8Array(0)), "");
});

Deno.test("text: random hex has the asked length and differs between calls", () => {
  const a = randomHex(16);
  assert(/^[0-9a-f]{32}$/.test(a), a);
  assert(randomHex(16) !== a);
});

Deno.test("text: an error's message, with its name on request; other values as text", () => {
  assertEquals(errText(new TypeError("bad")), "bad");
  assertEquals(errText(new TypeError("bad"), true), "TypeError: bad");
  assertEquals(errText("plain"), "plain");
  assertEquals(errText(undefined), "undefined");
});
