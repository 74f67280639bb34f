/**
 * Found by an adversarial review (adv10b #1): a server that came back behind what its neighbour got from it (a restored or stale
 * data dir, or a crash inside its commit window) and accepts more new records than it lost
 * BEFORE its link to that neighbour is up (the neighbour is stopped, partitioned, or slow to
 * link while clients hammer the restarted server) was not detected at `SYNC`: its head is no
 * longer behind the neighbour's mark (peers.ts #onSync: `m.head < this.mark.seq`). The
 * neighbour then asks for what comes after its old mark, so the new records that reused the
 * lost sequence numbers never reach it, and the lost ones never come back: acknowledged
 * writes missing for good on one side or the other.
 */

import assert from "node:assert/strict";
import { iamat, ProcessHerd, waitKnown, whatsatMany } from "./_helpers/procs.ts";

/** Copies a server's record log from one dir to another. */
async function copyLog(from: string, to: string, server: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  await Deno.copyFile(`${from}/${server}.records`, `${to}/${server}.records`);
}

/** SIGTERM (a clean stop) and waits for the exit. */
async function stopCleanly(herd: ProcessHerd, name: string): Promise<void> {
  const p = herd.procs.get(name)!;
  p.child.kill("SIGTERM");
  await p.child.status;
}

// The copy of Ant's log is taken after a kill (a crash inside the commit window leaves the same),
// or after a clean stop (a backup; and what a kill in the first commit window after a clean start
// left before the start wrote its epoch after the clean stop: review11 #1).
const CASES = [
  { saved: "after a kill", how: "neighbour stopped (SIGSTOP)" },
  { saved: "after a kill", how: "neighbour down (kill -9)" },
  { saved: "after a clean stop", how: "neighbour down (kill -9)" },
] as const;

for (const { saved, how } of CASES) {
  Deno.test(`a server back behind its neighbour's mark (log copied ${saved}) that takes writes before relinking (${how}): both sides converge`, async () => {
    const topology = { Ant: ["Bee"], Bee: ["Ant"] };
    const herd = await ProcessHerd.create({ topology });
    const expected = new Map<string, string>();
    /** `n` IAMATs to Ant of clients `<batch>.k`, each AT reply remembered as acknowledged. */
    const ack = async (batch: string, n: number, location: string, timeBase: string) => {
      for (let k = 0; k < n; k++) {
        const client = `${batch}.${k}`;
        expected.set(client, await iamat(herd.port("Ant"), client, location, `${timeBase}${k}`));
      }
    };
    try {
      await herd.startAll();
      await herd.waitLinksUp();
      await ack("base", 3, "+1+1", "170000000");
      await waitKnown(herd, ["Bee"], expected, 5000);
      // Ant's disk as it is now: what a stale data dir, a restored backup or a crash inside the
      // commit window leaves behind.
      if (saved === "after a kill") await herd.kill("Ant");
      else {
        await stopCleanly(herd, "Ant");
        const log = await Deno.readTextFile(`${herd.dataDir}/Ant.records`);
        assert.match(log, / C 1\n$/, "precondition: a clean stop ends the log with C 1");
      }
      const backup = `${herd.dir}/backup`;
      await copyLog(herd.dataDir, backup, "Ant");
      await herd.start("Ant");
      await herd.waitLinksUp();
      // Six records Ant acknowledges and floods to Bee, which stores them and its mark.
      await ack("lost", 6, "+2+2", "170000010");
      await waitKnown(herd, ["Bee"], expected, 5000);
      await new Promise((r) => setTimeout(r, 300)); // Bee's mark for Ant reaches its disk
      await herd.kill("Ant");
      await copyLog(backup, herd.dataDir, "Ant");

      // Bee is unreachable while Ant comes back and takes ten new records (more than it lost).
      const bee = herd.procs.get("Bee")!;
      if (how === "neighbour stopped (SIGSTOP)") Deno.kill(bee.pid, "SIGSTOP");
      else await herd.kill("Bee");
      try {
        await herd.start("Ant");
        await ack("new", 10, "+3+3", "170000020");
      } finally {
        if (how === "neighbour stopped (SIGSTOP)") Deno.kill(bee.pid, "SIGCONT");
      }
      if (how === "neighbour down (kill -9)") await herd.start("Bee");
      await herd.waitLinksUp(15_000);
      try {
        await waitKnown(herd, ["Ant", "Bee"], expected, 10_000);
      } catch (err) {
        const ant = await whatsatMany(herd.port("Ant"), [...expected.keys()]);
        const beeHas = await whatsatMany(herd.port("Bee"), [...expected.keys()]);
        const missing = (m: Map<string, string | undefined>) =>
          [...expected].filter(([c, at]) => m.get(c) !== at).map(([c]) => c);
        assert.fail(
          `10 s after relinking, Ant lacks [${missing(ant).join(", ")}] and Bee lacks [${
            missing(beeHas).join(", ")
          }] (${(err as Error).message.slice(0, 200)})`,
        );
      }
    } finally {
      await herd.close();
    }
  });
}
