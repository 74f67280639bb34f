/**
 * Partitions with real processes: for each of the ten ways to SIGKILL two of
 * the five seed servers, an IAMAT at each survivor is known to exactly the survivors still
 * connected to it through surviving servers (`?` at the cut-off ones). Both come back (from their
 * disks) and, as the course's grading script does, 0.5 s later IAMATs at them and at a survivor
 * are known everywhere at once (the links are up again by then); every server knows everything
 * within a few seconds.
 *
 * One herd runs all ten cases in turn, with persistence on. Hill and Smith answer an unknown
 * WHATSAT at once (`--whatsat-grace-ms 0`); the other three keep the default 250 ms grace.
 */

import assert from "node:assert/strict";
import { iamat, ProcessHerd, reachable, waitKnown, whatsatMany } from "./_helpers/procs.ts";

/** How long two restarted servers may take until every server knows every record. */
const CONVERGE_MS = 10_000;
/** Bound (generous, for a loaded machine) on a restarted server's links coming up. */
const LINKED_WITHIN_MS = 1000;
/** Bound on the IAMATs sent 0.5 s after the restart reaching every server. */
const FRESH_MS = 1000;

Deno.test("partition: every way to kill two of five; survivors agree by reachability; restarts converge", async () => {
  await using herd = await ProcessHerd.create({
    args: (n) => (n === "Hill" || n === "Smith" ? ["--whatsat-grace-ms", "0"] : []),
  });
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

    // Both come back from their disks; their links are up at once.
    const t0 = performance.now();
    const from = await Promise.all(pair.map(async (n) => (await herd.log(n)).length));
    await herd.startAll(pair);
    const listening = performance.now();
    const linked: string[] = [];
    for (const [i, n] of pair.entries()) {
      const delays = await herd.linkUpDelays(n, from[i]);
      const worst = Math.max(...delays.values());
      assert.ok(
        worst < LINKED_WITHIN_MS,
        `case ${pair.join("+")}: ${n} linked after ${worst} ms`,
      );
      linked.push(`${n} ${worst}`);
    }
    // 0.5 s after the restart: new IAMATs at both and at a survivor reach every server.
    await new Promise((r) => setTimeout(r, Math.max(0, 500 - (performance.now() - listening))));
    const fresh = new Map<string, string>();
    for (const s of [...pair, survivors[0]]) {
      const client = `r${caseNo}.${s}`;
      const at = await iamat(herd.port(s), client, `-${caseNo}.5+${caseNo + 2}.75`, "1700000100");
      fresh.set(client, at);
      everything.set(client, at);
    }
    await waitKnown(herd, names, fresh, FRESH_MS);
    // And, after catch-up, every record so far.
    const ms = await waitKnown(herd, names, everything, CONVERGE_MS);
    timings.push(
      `${pair.join("+")} ${(performance.now() - t0).toFixed(0)} ms (${
        ms.toFixed(0)
      } after the fresh ones; linked after ${linked.join(", ")} ms)`,
    );
    // Next case starts from a whole herd.
    await herd.waitLinksUp();
  }
  console.log(`  restart to convergence: ${timings.join("; ")}`);
});
