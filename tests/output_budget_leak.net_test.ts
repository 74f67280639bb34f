/**
 * Found by a review of this session's changes (review11 #3): a reply that completes after its connection closed is still counted in the
 * process's output budget, for good. ClientConnection.close() releases what the connection held
 * and zeroes it, but a WHATSAT still in flight (its grace wait for an unknown client, or a Places
 * lookup) resolves later and #releaseSlots -> #push adds its reply to `outputBudget` (total and
 * #holding, and the connection back into #holders) with nothing to take it out again: close()
 * already ran and returns early from now on. Each such reply leaks its length; once the leaks
 * reach --reply-budget-mib the process is "over" forever: the sweeper runs for good, and every
 * connection holding its "even share" (the leaked ones counted in #holding) is paused after
 * each reply.
 *
 * Here the connections close because their server stops (the dashboard's stop in `start`, or
 * Herd.stopServer) while their WHATSATs wait for an unknown client (the grace wait).
 */

import assert from "node:assert/strict";
import { startSeedHerd } from "./_helpers/net.ts";
import { outputBudget } from "../servers/output_budget.ts";

const ROUNDS = 20;

Deno.test("output budget: replies finished after their connection closed are not counted for good", async (t) => {
  await using h = await startSeedHerd({ whatsatGraceMs: 500 });

  await t.step(
    "a server stopped (dashboard stop in `start`) with WHATSATs in their grace wait",
    async () => {
      const before = outputBudget.total;
      const conns = await Promise.all(Array.from({ length: ROUNDS }, async (_, i) => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: h.port("Hill") });
        await conn.write(new TextEncoder().encode(`WHATSAT ghost${i}.${"g".repeat(200)} 10 5\n`));
        return conn;
      }));
      await new Promise((r) => setTimeout(r, 100)); // read and waiting
      await h.herd.stopServer("Hill");
      for (const c of conns) c.close();
      await new Promise((r) => setTimeout(r, 1500)); // every grace wait is over
      assert.equal(
        outputBudget.total - before,
        0,
        `${outputBudget.total - before} reply bytes of ${ROUNDS} closed connections still counted`,
      );
    },
  );
});
