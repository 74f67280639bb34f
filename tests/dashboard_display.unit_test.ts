/** dashboard/display.ts: page data safe inside a <script>. */

import { assert, assertEquals } from "./_helpers/assert.ts";
import { jsonForScript } from "../dashboard/display.ts";

Deno.test("display: JSON for a script element escapes what would end or confuse it", () => {
  const j = jsonForScript({ a: "</script><!--\u2028" });
  assert(!/[<>&\u2028]/.test(j));
  assertEquals(JSON.parse(j), { a: "</script><!--\u2028" });
});
