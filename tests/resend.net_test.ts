/**
 * A client that re-sends the very same IAMAT (same client, location and time), to the same server
 * or to another one. PROTOCOL.md: "a client's record is replaced only by one with a strictly newer
 * client time", and "a duplicate is not propagated again". Found by the second adversarial review.
 */

import assert from "node:assert/strict";
import { clientTime, exchange, startSeedHerd } from "./_helpers/net.ts";

const UCLA = "+34.068930-118.445127";

Deno.test("a re-sent identical IAMAT neither replaces the stored record nor floods again", async () => {
  await using t = await startSeedHerd();
  const servers = ["Hill", "Jaquez", "Smith", "Campbell", "Singleton"];
  const line = `IAMAT resend ${UCLA} ${clientTime()}\n`;
  const first = await exchange(t.port("Hill"), line);
  assert.match(first, /^AT Hill \+\d+\.\d{9} resend /);
  // The same line again, a little later (so its time difference differs), at the same server and
  // at one whose name sorts after Hill's.
  await new Promise((r) => setTimeout(r, 20));
  const again = await exchange(t.port("Hill"), line);
  const elsewhere = await exchange(t.port("Smith"), line);
  assert.notDeepEqual(again, first, "the re-send's own reply carries its own time difference");
  assert.match(elsewhere, /^AT Smith /);

  await new Promise((r) => setTimeout(r, 200)); // let any second flood land everywhere
  for (const name of servers) {
    const w = await exchange(t.port(name), "WHATSAT resend 10 0\n");
    assert.ok(
      w.startsWith(first),
      `${name} answers with a re-send's AT line instead of the first one:\n` +
        `  first: ${first}  stored: ${w.split("\n")[0]}`,
    );
  }
});
