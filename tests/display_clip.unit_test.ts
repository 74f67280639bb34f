/**
 * Found by a review of this session's changes (review11 #5): displayClip cuts at DISPLAY_MAX bytes, not at a character boundary: a client ID
 * or line whose 300th byte falls inside a UTF-8 character is shown with a U+FFFD where the
 * character was, a character the client never sent.
 */

import assert from "node:assert/strict";
import { DISPLAY_MAX, displayClip } from "../servers/events.ts";

Deno.test("displayClip: a cut never splits a UTF-8 character into U+FFFD", () => {
  // 299 ASCII bytes, then "é" (0xc3 0xa9) across the 300-byte edge, then more.
  const binary = "a".repeat(DISPLAY_MAX - 1) + "\xc3\xa9" + "b".repeat(10);
  const shown = displayClip(binary);
  assert.ok(!shown.includes("\ufffd"), `shown: ${JSON.stringify(shown.slice(DISPLAY_MAX - 3))}`);
});
