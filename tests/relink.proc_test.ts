/**
 * Fast relink, with real server processes: a server that starts dials every
 * neighbour at once, whichever name sorts first, so a neighbour that comes back is linked within
 * about 100 ms of listening even after its neighbours' redial backoff grew; when both ends
 * dial, each link keeps exactly one connection and never flaps (one LINK UP per link, no LINK
 * DOWN). The course-style "kill two of five" cases are in tests/partition.proc_test.ts.
 */

import assert from "node:assert/strict";
import { iamat, ProcessHerd, whatsat } from "./_helpers/procs.ts";

/** Generous bound for a loaded 2-core machine; the measured values are printed. */
const LINKED_WITHIN_MS = 1000;

function count(text: string, re: RegExp): number {
  return (text.match(new RegExp(re.source, "g")) ?? []).length;
}

Deno.test("relink: a restarted server is linked at once; both ends dialling never flap", async () => {
  await using herd = await ProcessHerd.create();
  // The whole herd starts at once: every pair dials both ways at the same moment.
  await herd.startAll();
  const measured: string[] = [];
  for (const name of herd.names) {
    const delays = await herd.linkUpDelays(name);
    measured.push(`${name} ${[...delays.values()].join("/")}`);
  }
  await new Promise((r) => setTimeout(r, 300)); // a late duplicate connection would show by now
  for (const name of herd.names) {
    const log = await herd.log(name);
    for (const peer of herd.topology[name]) {
      assert.equal(count(log, new RegExp(`LINK UP ${peer} `)), 1, `${name}: one LINK UP ${peer}`);
    }
    assert.doesNotMatch(log, /LINK DOWN/, `${name}: no flapping`);
  }
  console.log(`  all started together, ms from listening to each link: ${measured.join("; ")}`);

  // Kill one server for 3 s (its neighbours' backoff grows to the cap), restart it: linked at
  // once. Singleton sorts last (before, it never dialled) and Campbell first.
  const restarts: string[] = [];
  for (const [round, name] of ["Singleton", "Campbell"].entries()) {
    const neighbours = herd.topology[name];
    const upsBefore = new Map<string, number>();
    for (const n of neighbours) {
      upsBefore.set(n, count(await herd.log(n), new RegExp(`LINK UP ${name} `)));
    }
    await herd.kill(name);
    await new Promise((r) => setTimeout(r, 3000));
    const from = (await herd.log(name)).length;
    await herd.start(name);
    const listening = performance.now();
    const delays = await herd.linkUpDelays(name, from);
    const worst = Math.max(...delays.values());
    restarts.push(`${name} ${[...delays].map(([p, ms]) => `${p} ${ms}`).join(", ")} ms`);
    assert.ok(worst < LINKED_WITHIN_MS, `${name} linked ${worst} ms after listening`);

    // As the course's script does: 0.5 s after the restart, IAMAT at a neighbour, and the
    // restarted server knows it.
    await new Promise((r) => setTimeout(r, Math.max(0, 500 - (performance.now() - listening))));
    const client = `relink.${round}`;
    const at = await iamat(herd.port(neighbours[0]), client, "+1+2", "1700000000");
    assert.equal(await whatsat(herd.port(name), client), at, `${name} knows ${client}`);

    // One connection per link, at both ends: one new LINK UP, no LINK DOWN since listening.
    const run = (await herd.log(name)).slice(from);
    for (const n of neighbours) {
      assert.equal(count(run, new RegExp(`LINK UP ${n} `)), 1, `${name}: one LINK UP ${n}`);
      const theirs = await herd.log(n);
      assert.equal(
        count(theirs, new RegExp(`LINK UP ${name} `)),
        upsBefore.get(n)! + 1,
        `${n}: one new LINK UP ${name}`,
      );
    }
    assert.doesNotMatch(run, /LINK DOWN/, `${name}: no flapping`);
  }
  console.log(`  restarted after 3 s away, linked after listening: ${restarts.join("; ")}`);
});
