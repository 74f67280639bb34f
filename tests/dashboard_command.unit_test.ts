/** dashboard/command.ts: when a console command's reply is complete. */

import assert from "node:assert/strict";
import { replyComplete } from "../dashboard/command.ts";

Deno.test("command: a reply is complete at the end of its layout, or of a ? line", () => {
  assert.ok(replyComplete("IAMAT a b c", "AT x\n"));
  assert.ok(!replyComplete("WHATSAT a 1 1", "AT x\n{"));
  assert.ok(replyComplete("WHATSAT a 1 1", "AT x\n{}\n\n"));
  assert.ok(replyComplete("WHATSAT a 1- 1", "? WHATSAT a 1- 1\n"));
  assert.ok(!replyComplete("X", "? X"));
});
