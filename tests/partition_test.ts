/**
 * Partitions with real processes (issue 5): for each of the ten ways to SIGKILL two of the five
 * seed servers, an IAMAT at each survivor is known to exactly the survivors still connected to
 * it through surviving servers (`?` at the cut-off ones), and once both come back (from their
 * disks) every server knows everything within a few seconds.
 *
 * One herd runs all ten cases in turn, with persistence on. Hill and Smith answer an unknown
 * WHATSAT at once (`--whatsat-grace-ms 0`); the other three keep the default 250 ms grace.
 */

import assert from "node:assert/strict";
import { iamat, ProcessHerd, reachable, waitKnown, whatsatMany } from "./_helpers/procs.ts";

/** How long two restarted servers may take until every server knows every record. */
const CONVERGE_MS = 10_000;

Deno.test("partition: every way to kill two of five; survivors agree by reachability; restarts converge", async () => {
  const herd = await ProcessHerd.create({
    args: (n) => (n === "Hill" || n === "Smith" ? ["--whatsat-grace-ms", "0"] : []),
  });
  try {
    await herd.startAll();
    await herd.waitLinksUp();
    const names = herd.names;
    const pairs: [string, string][] = [];
    for (let i = 0; i < names.length; i++) {
      for (let j = i + 1; j < names.length; j++) pairs.push([names[i], names[j]]);
    }
    assert.equal(pairs.length, 10);

    const everything = new Map<string, string>();
    const timings: string[] = [];
    for (const [caseNo, pair] of pairs.entries()) {
      await herd.killAll(pair);
      const survivors = names.filter((n) => !pair.includes(n));
      const alive = (n: string) => survivors.includes(n);

      // One IAMAT at each survivor.
      const records = new Map<string, { origin: string; at: string }>();
      for (const s of survivors) {
        const client = `p${caseNo}.${s}`;
        const at = await iamat(
          herd.port(s),
          client,
          `+${caseNo}.5-${caseNo + 1}.25`,
          `${1700000000 + caseNo}`,
        );
        records.set(client, { origin: s, at });
        everything.set(client, at);
      }

      // Known by every survivor connected to its origin...
      for (const s of survivors) {
        const want = new Map<string, string>();
        const group = reachable(herd.topology, s, alive);
        for (const [client, r] of records) if (group.has(r.origin)) want.set(client, r.at);
        await waitKnown(herd, [s], want, 5000);
      }
      // ... and unknown (`?`) to the cut-off ones, who cannot learn it while the pair is down.
      await Promise.all(survivors.map(async (s) => {
        const group = reachable(herd.topology, s, alive);
        const cutOff = [...records].filter(([, r]) => !group.has(r.origin)).map(([c]) => c);
        const got = await whatsatMany(herd.port(s), cutOff);
        for (const c of cutOff) {
          assert.equal(
            got.get(c),
            undefined,
            `case ${pair.join("+")}: ${s} knows ${c} from a cut-off server`,
          );
        }
      }));

      // Both come back from their disks: every server knows every record so far.
      const t0 = performance.now();
      await herd.startAll(pair);
      const ms = await waitKnown(herd, names, everything, CONVERGE_MS);
      timings.push(
        `${pair.join("+")} ${(performance.now() - t0).toFixed(0)} ms (${
          ms.toFixed(0)
        } after listening)`,
      );
      // Next case starts from a whole herd.
      await herd.waitLinksUp();
    }
    console.log(`  restart to convergence: ${timings.join("; ")}`);
  } finally {
    await herd.close();
  }
});
