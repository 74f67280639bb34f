/**
 * Found by a review of this session's changes (review11 #1): after a CLEAN start the record log still ends with `C 1` until the first group
 * commit appends to it. Records are flooded before their commit, so a server killed inside
 * that first commit window (or one brought back from a backup taken after a clean stop, the
 * normal way to back up a data dir) restarts from a log that says "clean": it keeps its old
 * epoch and numbers its next records with the sequence numbers its neighbour already holds a
 * mark for. That is exactly adv10b #1 (tests/reused_seq.proc_test.ts), reopened: the only
 * difference here is that the copy of the log was taken after a clean stop (SIGTERM), not a kill.
 */

import assert from "node:assert/strict";
import { iamat, ProcessHerd, waitKnown, whatsatMany } from "./_helpers/procs.ts";

/** SIGTERM (a clean stop) and waits for the exit. */
async function stopCleanly(herd: ProcessHerd, name: string): Promise<void> {
  const p = herd.procs.get(name)!;
  p.child.kill("SIGTERM");
  await p.child.status;
}

Deno.test("a log copied after a clean stop (= killed inside the first commit window after a clean restart): the restarted server and its neighbour converge", async () => {
  const topology = { Ant: ["Bee"], Bee: ["Ant"] };
  const herd = await ProcessHerd.create({ topology });
  const expected = new Map<string, string>();
  try {
    await herd.startAll();
    await herd.waitLinksUp();
    for (let k = 0; k < 3; k++) {
      expected.set(
        `base.${k}`,
        await iamat(herd.port("Ant"), `base.${k}`, "+1+1", `170000000${k}`),
      );
    }
    await waitKnown(herd, ["Bee"], expected, 5000);
    await stopCleanly(herd, "Ant");
    const log = await Deno.readTextFile(`${herd.dataDir}/Ant.records`);
    assert.match(log, / C 1\n$/, "precondition: a clean stop ends the log with C 1");
    // What Ant's disk holds from its next start until its first commit.
    const backup = `${herd.dir}/Ant.records.clean`;
    await Deno.copyFile(`${herd.dataDir}/Ant.records`, backup);

    await herd.start("Ant");
    await herd.waitLinksUp();
    for (let k = 0; k < 6; k++) {
      expected.set(
        `lost.${k}`,
        await iamat(herd.port("Ant"), `lost.${k}`, "+2+2", `170000010${k}`),
      );
    }
    await waitKnown(herd, ["Bee"], expected, 5000);
    await new Promise((r) => setTimeout(r, 300)); // Bee's mark for Ant reaches its disk
    // Killed before its first commit: the disk still ends with C 1.
    await herd.kill("Ant");
    await Deno.copyFile(backup, `${herd.dataDir}/Ant.records`);

    // Bee is down while Ant comes back and takes ten new records (more than it lost).
    await herd.kill("Bee");
    await herd.start("Ant");
    for (let k = 0; k < 10; k++) {
      expected.set(`new.${k}`, await iamat(herd.port("Ant"), `new.${k}`, "+3+3", `170000020${k}`));
    }
    await herd.start("Bee");
    await herd.waitLinksUp(15_000);
    try {
      await waitKnown(herd, ["Ant", "Bee"], expected, 10_000);
    } catch (err) {
      const ant = await whatsatMany(herd.port("Ant"), [...expected.keys()]);
      const bee = await whatsatMany(herd.port("Bee"), [...expected.keys()]);
      const missing = (m: Map<string, string | undefined>) =>
        [...expected].filter(([c, at]) => m.get(c) !== at).map(([c]) => c);
      assert.fail(
        `10 s after relinking, Ant lacks [${missing(ant).join(", ")}] and Bee lacks [${
          missing(bee).join(", ")
        }] (${(err as Error).message.slice(0, 200)})`,
      );
    }
  } finally {
    await herd.close();
  }
});
