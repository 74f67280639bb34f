/**
 * The flood's record lines, counted from each `server` process's `/metrics`, for the tests of the
 * flood's trees (tests/flood_tree*.proc_test.ts): how many a herd sent, whether the trees are in
 * use, and the seed herd in network namespaces with an ops port per process.
 */

import assert from "node:assert/strict";
import { iamat, ProcessHerd, type ProcessHerdOptions } from "./procs.ts";
import { freePorts } from "./net.ts";
import { parseExposition } from "./prom.ts";
import type { TestNet } from "./netns.ts";
import { SEED_NAMES } from "../../servers/seed.ts";

/** Record lines the running processes of `herd` have sent so far (`herd_updates_propagated_total`). */
export async function linesSent(herd: ProcessHerd, opsPorts: Map<string, number>): Promise<number> {
  let n = 0;
  for (const [name, port] of opsPorts) {
    if (!herd.running(name)) continue;
    const text = await (await fetch(`http://${herd.host(name)}:${port}/metrics`)).text();
    for (const s of parseExposition(text).all("herd_updates_propagated_total", { server: name })) {
      n += s.value;
    }
  }
  return n;
}

/** Waits (bounded: 30 s) until 10 sequential IAMATs at `at` cost at most 4.5 record lines each. */
export async function treesInUse(
  herd: ProcessHerd,
  opsPorts: Map<string, number>,
  at: string,
  tag: string,
): Promise<void> {
  const deadline = performance.now() + 30_000;
  for (let round = 0;; round++) {
    const before = await linesSent(herd, opsPorts);
    for (let i = 0; i < 10; i++) {
      await iamat(
        herd.port(at),
        `${tag}.${round}.${i}`,
        "+1+1",
        `${1_700_000_000 + i}`,
        herd.host(at),
      );
    }
    await new Promise((r) => setTimeout(r, 300));
    if ((await linesSent(herd, opsPorts)) - before <= 45) return;
    assert.ok(performance.now() < deadline, "the trees in use within 30 s");
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * The seed herd as five local processes, started and linked, each with an ops port (`extra`:
 * more flags for this start; `options.args`: flags for every start).
 */
export async function opsSeedHerd(
  extra: string[] = [],
  options: ProcessHerdOptions = {},
): Promise<[ProcessHerd, Map<string, number>]> {
  const herd = await ProcessHerd.create(options);
  const ports = freePorts(5);
  const opsPorts = new Map(herd.names.map((n, i) => [n, ports[i]]));
  await Promise.all(
    herd.names.map((n) => herd.start(n, ["--ops-port", String(opsPorts.get(n)), ...extra])),
  );
  await herd.waitLinksUp();
  return [herd, opsPorts];
}

/** The seed herd in `net`'s namespaces, started and linked, each process with an ops port. */
export async function netSeedHerd(
  net: TestNet,
): Promise<{ herd: ProcessHerd; opsPorts: Map<string, number> }> {
  const ports = freePorts(5);
  const opsPorts = new Map(SEED_NAMES.map((n, i) => [n, ports[i]]));
  const herd = await ProcessHerd.create({
    host: (n) => net.address(n),
    wrap: (n) => net.wrap(n),
    args: (n) => ["--ops-port", String(opsPorts.get(n)), "--ops-host", net.address(n)],
  });
  try {
    await herd.startAll();
    await herd.waitLinksUp(20_000);
  } catch (err) {
    await herd.close().catch(() => {});
    throw err;
  }
  return { herd, opsPorts };
}
