/**
 * The flood's trees (servers/flood_tree.ts, flood_health.ts) over real sockets: a healthy herd
 * sends each record about once per server, and any link cut or server stopped turns the herd
 * back to the full flood, with nothing lost on the way.
 */

import assert from "node:assert/strict";
import { freePorts, startSeedHerd, TcpClient, type TestHerd, waitFor } from "./_helpers/net.ts";
import { parseConfig, seedConfigJson } from "../servers/config.ts";
import { Herd } from "../servers/herd.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";

/** Every server uses the trees. */
function treesEverywhere(t: TestHerd): boolean {
  return [...t.herd.servers.values()].every((s) => s.treesInUse);
}

/** Records numbered again by the whole herd so far (it turned degraded). */
function floodedAgain(t: TestHerd): number {
  return [...t.herd.servers.values()].reduce((n, s) => n + s.recordsFloodedAgain, 0);
}

/** Record lines sent by the whole herd so far. */
function linesSent(t: TestHerd): number {
  let n = 0;
  for (const s of t.herd.servers.values()) for (const l of s.links) n += l.recordsSent;
  return n;
}

for (const tcpLinks of [true, false]) {
  Deno.test(`flood trees, seed herd ${tcpLinks ? "over TCP" : "in memory"}: about one record line per server`, async () => {
    await using t = await startSeedHerd({ tcpLinks });
    await waitFor(() => treesEverywhere(t), 20_000, "trees in use");
    const before = linesSent(t);
    const againBefore = floodedAgain(t);
    const late: string[] = [];
    const off = t.herd.bus.subscribe((e) => {
      if (e.kind === "receipt.late") late.push(`${e.server}<-${e.peers.join("+")}`);
      if (e.kind === "link.down") late.push(`down ${e.server}-${e.peer}`);
    });
    const c = await TcpClient.connect(t.port("Hill"));
    try {
      const n = 200;
      for (let i = 0; i < n; i++) {
        await c.send(`IAMAT tree-${i} +34.068930-118.445127 ${1_700_000_000 + i}.5\n`);
        await c.replies(i + 1, 10_000);
        // Read-your-writes, while every server answers within --receipt-wait-ms (the promise).
        const missing = [...t.herd.servers.values()].filter((s) => !s.store.get(`tree-${i}`));
        if (late.length === 0) {
          assert.deepEqual(missing.map((s) => s.name), [], `tree-${i} everywhere at its reply`);
        }
      }
      await new Promise((r) => setTimeout(r, 300));
      const per = (linesSent(t) - before) / n;
      console.log(`lines per update ${per}; late receipts, links down: ${late.join(", ")}`);
      // A stall on a box at load 20+ may turn the herd to the full flood a while: not counted.
      if (floodedAgain(t) === againBefore) assert.ok(per <= 4.5, `${per} record lines per update`);
    } finally {
      off();
      c.conn.close();
    }
  });
}

Deno.test("flood trees, seed herd over TCP: a link off the trees is not written to per record (no S and A ping-pong)", async () => {
  // An update along Hill's tree takes 8 link writes: a record line to each of the four other
  // servers, a receipt back from each. Before: each `S` (the mark past records a link skips) was
  // receipted in a write of its own, which carried an `S` of its own, receipted in turn: the
  // links off the tree (Smith-Singleton, Campbell-Singleton) wrote to each other on nearly every
  // record, ~11 writes per update, each a wake-up of the peer's process.
  await using t = await startSeedHerd({ tcpLinks: true });
  await waitFor(() => treesEverywhere(t), 20_000, "trees in use");
  const writes = () => {
    let n = 0;
    for (const s of t.herd.servers.values()) for (const l of s.links) n += l.writes;
    return n;
  };
  const c = await TcpClient.connect(t.port("Hill"));
  try {
    // Past two heartbeats (a PING or PONG on every link: each carries an `S`), then counted.
    let warm = 0;
    for (const until = Date.now() + 2_500; Date.now() < until; warm++) {
      await c.send(`IAMAT warm-${warm} +34.068930-118.445127 ${1_700_000_000 + warm}.5\n`);
      await c.replies(warm + 1, 10_000);
    }
    const before = writes();
    const againBefore = floodedAgain(t);
    const n = 200;
    for (let i = 0; i < n; i++) {
      await c.send(`IAMAT ping-pong-${i} +34.068930-118.445127 ${1_700_000_000 + i}.5\n`);
      await c.replies(warm + i + 1, 10_000);
    }
    const per = (writes() - before) / n;
    console.log(`link writes per update ${per}`);
    // PINGs and their PONGs add a few over the run; a turn to the full flood (a stall on a box
    // at load 20+) adds many: not counted.
    if (floodedAgain(t) === againBefore) assert.ok(per <= 9, `${per} link writes per update`);
  } finally {
    c.conn.close();
  }
});

/** Sends one IAMAT per line to `port` over one connection and reads every reply. */
async function iamats(port: number, lines: string[]): Promise<string[]> {
  const c = await TcpClient.connect(port);
  try {
    await c.send(lines.join(""));
    return (await c.replies(lines.length, 20_000)).slice(0, lines.length);
  } finally {
    c.conn.close();
  }
}

/** Every running server holds each of `clients` (a record of it, at least). */
function heldByAllRunning(t: TestHerd, clients: string[]): string[] {
  const missing: string[] = [];
  for (const s of t.herd.servers.values()) {
    if (!s.running) continue;
    for (const c of clients) if (s.store.get(c) === undefined) missing.push(`${s.name}:${c}`);
  }
  return missing;
}

/**
 * IAMATs at every running server, half before `fault` and half right after it, while records
 * are in flight; then every running server must hold every one of them within `ms`.
 */
async function floodAround(
  t: TestHerd,
  tag: string,
  fault: () => Promise<void> | void,
  ms = 5000,
): Promise<void> {
  const names = [...t.herd.servers.values()].filter((s) => s.running).map((s) => s.name);
  const clients: string[] = [];
  const batch = (half: number) =>
    Promise.all(names.map((name) => {
      if (!t.herd.servers.get(name)!.running) return undefined;
      const lines = Array.from({ length: 20 }, (_, i) => {
        const client = `${tag}.${name}.${half}.${i}`;
        clients.push(client);
        return `IAMAT ${client} +34.068930-118.445127 ${1_700_000_000 + i}.5\n`;
      });
      return iamats(t.port(name), lines);
    }));
  // The fault comes while the first batch's flood may still be on its way.
  await batch(0);
  await fault();
  await batch(1);
  try {
    await waitFor(() => heldByAllRunning(t, clients).length === 0, ms, `${tag} everywhere`);
  } catch (err) {
    throw new Error(`${err}: missing ${heldByAllRunning(t, clients).slice(0, 10).join(", ")}`);
  }
}

Deno.test("flood trees, seed herd over TCP: each link cut in turn, each server stopped in turn: nothing lost", async () => {
  await using t = await startSeedHerd({ tcpLinks: true });
  const links = t.config.servers.flatMap((s) =>
    s.neighbors.filter((n) => s.name < n).map((n) => [s.name, n] as const)
  );
  assert.equal(links.length, 6);
  for (const [a, b] of links) {
    await waitFor(() => treesEverywhere(t), 20_000, "trees in use");
    const again = [...t.herd.servers.values()].reduce((n, s) => n + s.recordsFloodedAgain, 0);
    await floodAround(t, `cut-${a}-${b}`, () => void t.herd.setLink(a, b, { cut: true }));
    assert.ok(!treesEverywhere(t), "a cut link turns the herd to the full flood");
    const after = [...t.herd.servers.values()].reduce((n, s) => n + s.recordsFloodedAgain, 0);
    assert.ok(after > again, "what the trees skipped was flooded again");
    t.herd.setLink(a, b, { cut: false });
  }
  for (const name of t.config.servers.map((s) => s.name)) {
    await waitFor(() => treesEverywhere(t), 20_000, "trees in use");
    await floodAround(t, `stop-${name}`, () => t.herd.stopServer(name));
    await t.herd.startServer(name);
    const all = [...t.herd.servers.keys()];
    await waitFor(
      () => t.herd.servers.get(name)!.links.every((l) => l.up),
      20_000,
      `${name} relinked`,
    );
    // It catches up what it missed.
    const missed = [...t.herd.servers.get("Hill" === name ? "Smith" : "Hill")!.store.values()]
      .map((r) => r.client);
    await waitFor(() => heldByAllRunning(t, missed).length === 0, 10_000, `${name} caught up`);
    assert.equal(all.length, 5);
  }
});

/** A herd of `names` with `links` (undirected), over loopback TCP. */
function topology(names: string[], links: [string, string][]) {
  const ports = freePorts(names.length);
  const servers: Record<string, { port: number; neighbors: string[] }> = {};
  names.forEach((n, i) => (servers[n] = { port: ports[i], neighbors: [] }));
  for (const [a, b] of links) servers[a].neighbors.push(b);
  return parseConfig({ servers });
}

const NAMES = ["A", "B", "C", "D", "E"];
const TOPOLOGIES: Record<string, [string, string][]> = {
  ring: [["A", "B"], ["B", "C"], ["C", "D"], ["D", "E"], ["E", "A"]],
  line: [["A", "B"], ["B", "C"], ["C", "D"], ["D", "E"]],
  star: [["C", "A"], ["C", "B"], ["C", "D"], ["C", "E"]],
  // Two cycles sharing a link, with a chord.
  mesh: [["A", "B"], ["A", "C"], ["B", "C"], ["B", "D"], ["C", "E"], ["D", "E"], ["A", "E"]],
};

for (const [shape, links] of Object.entries(TOPOLOGIES)) {
  Deno.test(`flood trees, a ${shape} over TCP: 4 record lines per update from any server; a cut link floods as before`, async () => {
    await using t = await startSeedHerd({ tcpLinks: true }, topology(NAMES, links));
    await waitFor(() => treesEverywhere(t), 20_000, "trees in use");
    let late = 0;
    const off = t.herd.bus.subscribe((e) => {
      if (e.kind === "receipt.late") late++;
    });
    for (const name of NAMES) {
      const before = linesSent(t);
      const lateBefore = late;
      const againBefore = floodedAgain(t);
      const lines = Array.from(
        { length: 10 },
        (_, i) => `IAMAT ${shape}.${name}.${i} +1+1 ${1_700_000_000 + i}\n`,
      );
      const c = await TcpClient.connect(t.port(name));
      try {
        for (const [i, line] of lines.entries()) {
          await c.send(line);
          await c.replies(i + 1, 10_000);
        }
      } finally {
        c.conn.close();
      }
      const clients = lines.map((_, i) => `${shape}.${name}.${i}`);
      // Read-your-writes holds while every server answers within --receipt-wait-ms (a box at
      // load 27 once timed a receipt out: then the reply went without it, as promised).
      if (late === lateBefore) {
        assert.deepEqual(heldByAllRunning(t, clients), [], "everywhere at the replies");
      }
      await new Promise((r) => setTimeout(r, 100));
      // 4 lines while the herd stayed healthy (no stall turned it to the full flood).
      if (treesEverywhere(t) && floodedAgain(t) === againBefore) {
        assert.equal((linesSent(t) - before) / lines.length, 4, `from ${name}`);
      }
    }
    off();
    // Cut the first link that leaves the rest connected (every link but a line's or a star's).
    const [a, b] = links[0];
    if (shape === "ring" || shape === "mesh") {
      await floodAround(t, `${shape}-cut`, () => void t.herd.setLink(a, b, { cut: true }));
    }
  });
}

Deno.test("flood trees: servers whose configs differ, or one with --full-flood (as an older server), flood every link", async () => {
  const ports = freePorts(5);
  const seed = parseConfig(seedConfigJson(ports));
  // Campbell's config names one more server, linked to nobody: another topology hash.
  const other = seedConfigJson(ports);
  const extended = parseConfig({
    servers: { ...other.servers, Zed: { port: freePorts(1)[0], neighbors: [] } },
  });
  for (const odd of ["config", "full-flood"] as const) {
    const herds = seed.servers.map((s) => {
      const mine = s.name === "Campbell" && odd === "config" ? extended : seed;
      return new Herd(mine, {
        ...SERVER_DEFAULTS,
        places: createOfflineProvider(),
        secret: "test-secret-0123456789",
        only: [s.name],
        floodTrees: !(s.name === "Campbell" && odd === "full-flood"),
      });
    });
    const servers = herds.map((h) => [...h.servers.values()][0]);
    try {
      await Promise.all(herds.map((h) => h.start()));
      await waitFor(() => servers.every((s) => s.links.every((l) => l.up)), 20_000, "links up");
      // Long enough for the trees to be used, were they trusted (3 heartbeats of quiet).
      await new Promise((r) => setTimeout(r, 4000));
      assert.deepEqual(servers.filter((s) => s.treesInUse).map((s) => s.name), [], odd);
      const sent = () =>
        servers.reduce((n, s) => n + s.links.reduce((m, l) => m + l.recordsSent, 0), 0);
      const before = sent();
      const c = await TcpClient.connect(seed.servers[0].port);
      try {
        for (let i = 0; i < 20; i++) {
          await c.send(`IAMAT odd-${odd}-${i} +1+1 ${1_700_000_000 + i}\n`);
          await c.replies(i + 1, 10_000);
          const missing = servers.filter((s) => s.store.get(`odd-${odd}-${i}`) === undefined);
          assert.deepEqual(missing.map((s) => s.name), [], "everywhere at its reply");
        }
      } finally {
        c.conn.close();
      }
      await new Promise((r) => setTimeout(r, 200));
      assert.ok((sent() - before) / 20 >= 6, `${(sent() - before) / 20} lines per update`);
    } finally {
      await Promise.all(herds.map((h) => h.stop()));
    }
  }
});
