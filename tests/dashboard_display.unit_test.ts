/** dashboard/display.ts: page data safe inside a <script>. */

import assert from "node:assert/strict";
import { jsonForScript } from "../dashboard/display.ts";

Deno.test("display: JSON for a script element escapes what would end or confuse it", () => {
  const j = jsonForScript({ a: "</script><!--\u2028" });
  assert.ok(!/[<>&\u2028]/.test(j));
  assert.deepEqual(JSON.parse(j), { a: "</script><!--\u2028" });
});
