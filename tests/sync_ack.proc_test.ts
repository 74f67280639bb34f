/**
 * `--sync-ack`: an AT reply means the record is on the receiving server's disk, so a SIGKILL
 * right after the reply loses nothing, even with no neighbour up to have received it.
 */

import assert from "node:assert/strict";
import { iamat, ProcessHerd, whatsatMany } from "./_helpers/procs.ts";

Deno.test("--sync-ack: acknowledged updates survive SIGKILL at once, with no neighbour", async () => {
  await using herd = await ProcessHerd.create({ topology: { Solo: [] } });
  await herd.start("Solo", ["--sync-ack"]);
  const expected = new Map<string, string>();
  for (let round = 0; round < 3; round++) {
    // Several clients in flight at once, then SIGKILL the moment the last reply is read.
    const clients = Array.from({ length: 20 }, (_, i) => `sync-${round}-${i}`);
    const lines = await Promise.all(
      clients.map((c, i) => iamat(herd.port("Solo"), c, "+1+1", `${1000 + round}.${i}`)),
    );
    clients.forEach((c, i) => expected.set(c, lines[i]));
    await herd.kill("Solo");
    await herd.start("Solo", ["--sync-ack"]);
    const known = await whatsatMany(herd.port("Solo"), [...expected.keys()]);
    for (const [client, line] of expected) assert.deepEqual(known.get(client), line, client);
  }
});
