/**
 * The flood's trees (servers/flood_tree.ts, flood_health.ts) over real sockets: a healthy herd
 * sends each record about once per server, and any link cut or server stopped turns the herd
 * back to the full flood, with nothing lost on the way.
 */

import assert from "node:assert/strict";
import { freePorts, startSeedHerd, TcpClient, type TestHerd, waitFor } from "./_helpers/net.ts";
import { parseConfig } from "../servers/config.ts";

/** Every server uses the trees. */
function treesEverywhere(t: TestHerd): boolean {
  return [...t.herd.servers.values()].every((s) => s.treesInUse);
}

/** Record lines sent by the whole herd so far. */
function linesSent(t: TestHerd): number {
  let n = 0;
  for (const s of t.herd.servers.values()) for (const l of s.links) n += l.recordsSent;
  return n;
}

Deno.test("flood trees, seed herd over TCP: about one record line per server", async () => {
  await using t = await startSeedHerd({ tcpLinks: true });
  await waitFor(() => treesEverywhere(t), 20_000, "trees in use");
  const before = linesSent(t);
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
      const missing = [...t.herd.servers.values()].filter((s) => !s.store.get(`tree-${i}`));
      assert.deepEqual(
        missing.map((s) => s.name),
        [],
        `tree-${i} everywhere at its reply (${late.join(", ")})`,
      );
    }
    await new Promise((r) => setTimeout(r, 300));
    const per = (linesSent(t) - before) / n;
    console.log("lines per update", per);
    assert.ok(per <= 4.5, `${per} record lines per update`);
    assert.ok(treesEverywhere(t), "still healthy");
  } finally {
    off();
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
