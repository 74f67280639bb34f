/**
 * Found by an adversarial review (adv10b #1), the natural way: no backup restored, only kill -9 under load (default mode, no
 * --sync-ack) and a restart at once while the clients keep sending. The killed server loses the
 * records of its last commit window (documented: they "come back from its neighbours when it
 * restarts") and takes new records, reusing those sequence numbers, before its link is up again
 * (links take 20-480 ms after a restart). At SYNC the neighbour sees the head behind its mark
 * (or not, when enough new records came) and moves its mark to that head; the restarted server
 * streams from the neighbour's OLD mark (peers.ts #onSync: `from = m.mark`, its own `lost` is
 * about the other direction). The records it acknowledged between its restart and the SYNC with
 * sequence numbers at or below that old mark never reach the neighbour. Expected: after the
 * herd settles, both servers hold the same newest record for every acknowledged client.
 */

import assert from "node:assert/strict";
import { ProcessHerd } from "./_helpers/procs.ts";
import { askAll, startLoad } from "./_helpers/acked_load.ts";

const ROUNDS = 3;

for (const mode of [[], ["--sync-ack"]]) {
  Deno.test(`kill -9 under load, restart at once under load ${mode.join(" ") || "(default)"}: both servers agree on every acknowledged client`, async () => {
    const topology = { Ant: ["Bee"], Bee: ["Ant"] };
    const herd = await ProcessHerd.create({
      topology,
      args: () => ["--whatsat-grace-ms", "0", ...mode],
    });
    try {
      await herd.startAll();
      await herd.waitLinksUp();
      const load = startLoad(() => herd.port("Ant"), "L");
      for (let round = 0; round < ROUNDS; round++) {
        await new Promise((r) => setTimeout(r, 1500));
        await herd.kill("Ant");
        await herd.start("Ant");
      }
      await new Promise((r) => setTimeout(r, 1500));
      await load.stop();
      const acked = load.acked;
      await herd.waitLinksUp(15_000);
      await new Promise((r) => setTimeout(r, 3000)); // settle: catch-up of a few thousand records
      const clients = [...acked.keys()];
      const ant = await askAll(herd.port("Ant"), clients);
      const bee = await askAll(herd.port("Bee"), clients);
      const differ = clients.filter((c) => ant.get(c) !== bee.get(c));
      const lostBoth = clients.filter((c) => ant.get(c) === undefined && bee.get(c) === undefined);
      const onlyAnt = differ.filter((c) => bee.get(c) === undefined).length;
      const onlyBee = differ.filter((c) => ant.get(c) === undefined).length;
      console.log(
        `  ${acked.size} acknowledged; differ: ${differ.length} (only at Ant ${onlyAnt}, only at Bee ${onlyBee}); lost at both: ${lostBoth.length}`,
      );
      assert.deepEqual(
        differ.slice(0, 10).map((c) =>
          `${c}: Ant ${ant.get(c) ? "has" : "?"}, Bee ${bee.get(c) ? "has" : "?"}`
        ),
        [],
        `${differ.length} of ${acked.size} acknowledged clients differ between Ant and Bee 3 s after relinking`,
      );
    } finally {
      await herd.close();
    }
  });
}
