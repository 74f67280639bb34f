/** dashboard/display.ts: page data safe inside a <script>. */

import assert from "node:assert/strict";
import { DISPLAY_MAX, displayClip } from "../servers/events.ts";
import { jsonForScript } from "../dashboard/display.ts";

Deno.test("display: JSON for a script element escapes what would end or confuse it", () => {
  const j = jsonForScript({ a: "</script><!--\u2028" });
  assert.ok(!/[<>&\u2028]/.test(j));
  assert.deepEqual(JSON.parse(j), { a: "</script><!--\u2028" });
});

Deno.test("displayClip: at most DISPLAY_MAX bytes shown, with how many more; short text as displayText", () => {
  assert.equal(displayClip("IAMAT kiwi +1+1 5"), "IAMAT kiwi +1+1 5");
  assert.equal(displayClip("caf\xc3\xa9"), "café");
  const long = "BOGUS " + "z".repeat(65_000);
  const shown = displayClip(long);
  assert.equal(
    shown,
    `BOGUS ${"z".repeat(DISPLAY_MAX - 6)}… (+${long.length - DISPLAY_MAX} bytes)`,
  );
  // A cut never splits a multi-byte char: it moves back to where the char starts.
  const cut = displayClip("\xc3\xa9".repeat(200), 5);
  assert.equal(cut, "éé… (+396 bytes)");
});
