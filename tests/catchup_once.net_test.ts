/**
 * A restarted server reads each missed record once (docs/protocol.md, `HOLD` and `DIGEST`): of
 * two neighbours that would each stream it every record, the second holds its stream until the
 * first's ends, then skips what the restarted server holds as it does. In-process herds over
 * real sockets: M restarts; F and G are its neighbours (and each other's, unless cut). Nothing
 * may be lost whichever way the streams go: a partition between F and G, a stream that breaks
 * off, links that come up in either order.
 */

import assert from "node:assert/strict";
import { parseConfig } from "../servers/config.ts";
import { Herd } from "../servers/herd.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { openLogPersistence } from "../servers/persist.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";
import { freePorts, TcpClient, waitFor } from "./_helpers/net.ts";

const UCLA = "+34.068930-118.445127";
const N = 3000;

/** F, G and M; F–G linked; small batches, so a stream is many writes. `dataDir`: record logs. */
async function startHerd(dataDir?: string) {
  const [f, g, m] = freePorts(3);
  const config = parseConfig({
    servers: {
      F: { port: f, neighbors: ["M", "G"] },
      G: { port: g, neighbors: ["M"] },
      M: { port: m },
    },
  });
  const herd = new Herd(config, {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: "catchup-once-secret-0123456789",
    link: { ...SERVER_DEFAULTS.link, batchRecords: 64, holdMinRecords: 100 },
    ...(dataDir === undefined ? {} : {
      openPersistence: (name: string) => openLogPersistence(dataDir, name),
    }),
  });
  await herd.start();
  const server = (name: string) => herd.servers.get(name)!;
  await waitFor(
    () => [...herd.servers.values()].every((s) => s.links.every((l) => l.up)),
    10_000,
    "links up",
  );
  return {
    herd,
    server,
    port: (name: string) => config.servers.find((s) => s.name === name)!.port,
    /** Records M read on its links since it started. */
    read: () => server("M").links.reduce((n, l) => n + l.recordsReceived, 0),
    [Symbol.asyncDispose]: () => herd.stop(),
  };
}

/** Sends `count` IAMATs for clients `prefix0`... to `port`, pipelined, and waits for the replies. */
async function load(port: number, prefix: string, count: number): Promise<void> {
  const c = await TcpClient.connect(port);
  try {
    let text = "";
    for (let i = 0; i < count; i++) text += `IAMAT ${prefix}${i} ${UCLA} 1700000000.${i + 1}\n`;
    await c.send(text);
    await c.waitUntil((t) => t.split("\n").length > count, 30_000);
  } finally {
    await c.close();
  }
}

type TestHerd = Awaited<ReturnType<typeof startHerd>>;

/**
 * Every write on M's links 50 ms late: a stream of N records is ~47 writes (seconds), so the
 * second link's SYNC is read while the first stream runs, whichever comes first.
 */
function slowLinksToM(t: TestHerd): void {
  t.herd.setLink("F", "M", { delayMs: 50 });
  t.herd.setLink("G", "M", { delayMs: 50 });
}

/** Waits until `name` holds `count` records. */
function holds(t: TestHerd, name: string, count: number, ms = 30_000): Promise<void> {
  return waitFor(() => t.server(name).store.size >= count, ms, `${name} holding ${count}`);
}

/** M stopped, N records loaded at F (and so at G), M started again over slow links. */
async function restartAfterMissingN(t: TestHerd): Promise<void> {
  await t.herd.stopServer("M");
  await load(t.port("F"), "c", N);
  await holds(t, "G", N);
  slowLinksToM(t);
  await t.herd.startServer("M");
}

Deno.test("catch-up: a restarted server reads each record once, not once from each neighbour", async () => {
  await using t = await startHerd();
  await restartAfterMissingN(t);
  await holds(t, "M", N);
  // Every link quiet: nothing more is coming.
  await waitFor(
    () => t.server("M").links.every((l) => l.stats().state === "up"),
    30_000,
    "both catch-up streams ended",
  );
  const read = t.read();
  // Before: each neighbour streamed all N (2N). A few batches may go before the HOLD lands.
  assert.ok(read < 1.3 * N, `M read ${read} records for ${N}`);
  assert.equal(t.server("M").store.size, N);
});

Deno.test("catch-up: records the first neighbour lacks (a partition) come from the second", async () => {
  await using t = await startHerd();
  await t.herd.stopServer("M");
  t.herd.setLink("F", "G", { cut: true });
  await load(t.port("F"), "f", N);
  await load(t.port("G"), "g", 200);
  await holds(t, "F", N);
  await holds(t, "G", 200);
  slowLinksToM(t);
  await t.herd.startServer("M");
  await holds(t, "M", N + 200);
  const store = t.server("M").store;
  for (const id of ["f0", `f${N - 1}`, "g0", "g199"]) assert.ok(store.get(id), `M lacks ${id}`);
});

Deno.test("catch-up: when the first stream breaks off, the held one brings the rest", async () => {
  await using t = await startHerd();
  await restartAfterMissingN(t);
  const m = t.server("M");
  await waitFor(() => m.store.size > 0, 30_000, "M's catch-up started");
  // Whichever stream runs (the other was asked to hold) is cut.
  const running = m.links.find((l) => l.catchUpExpected >= 0 && l.stats().state === "syncing");
  assert.ok(running !== undefined, "a stream runs");
  const held = m.links.find((l) => l !== running)!;
  assert.equal(held.catchUpExpected, -1, "the other stream was asked to hold");
  assert.equal(held.stats().state, "syncing");
  const sizeAtCut = m.store.size;
  t.herd.setLink("M", running.peer, { cut: true });
  assert.ok(sizeAtCut < N, `cut before the end (${sizeAtCut})`);
  await holds(t, "M", N);
});

Deno.test("catch-up: links that come up one after the other lose nothing", async () => {
  for (const first of ["F", "G"]) {
    await using t = await startHerd();
    await t.herd.stopServer("M");
    await load(t.port("F"), "c", N);
    await holds(t, "G", N);
    const second = first === "F" ? "G" : "F";
    t.herd.setLink(second, "M", { cut: true });
    await t.herd.startServer("M");
    await holds(t, "M", N);
    // A record M lacks, at the second only; then its link comes up.
    t.herd.setLink(first, "M", { cut: true });
    await load(t.port(second), "late", 1);
    t.herd.setLink(second, "M", { cut: false });
    await holds(t, "M", N + 1);
    assert.ok(t.server("M").store.get("late0"), `M lacks the record only ${second} had`);
  }
});

Deno.test("catch-up: the digest for the held neighbour is made once the streamed records are in the record log", async () => {
  // Hashing every record for the digest takes the main thread ~0.3 s per 1M records, right when
  // the first stream ends: made before the record log's commit of that stream's last records,
  // it held their write back by as much (BENCHMARKS.md, "Catch-up of 2026-11-28").
  const dir = await Deno.makeTempDir({ prefix: "herd-catchup-digest-" });
  try {
    await using t = await startHerd(dir);
    await restartAfterMissingN(t);
    const store = t.server("M").store;
    const digest = store.digest.bind(store);
    let seen: { held: number; written: number } | undefined;
    store.digest = (d) => {
      // Entries of the record log: `<crc> R <seq> ...` lines.
      const log = Deno.readTextFileSync(`${dir}/M.records`);
      seen ??= { held: store.size, written: log.split("\n").filter((l) => l[9] === "R").length };
      return digest(d);
    };
    // The running stream at full speed from here: its last records and its CAUGHTUP come
    // together, as in a 1M catch-up, rather than one slowed write apart.
    const m = t.server("M");
    await waitFor(() => m.store.size > 0, 30_000, "M's catch-up started");
    const running = m.links.find((l) => l.catchUpExpected >= 0 && l.stats().state === "syncing");
    assert.ok(running !== undefined, "a stream runs");
    t.herd.setLink(running.peer, "M", { delayMs: 0 });
    await holds(t, "M", N);
    await waitFor(() => seen !== undefined, 30_000, "M's digest for the held neighbour");
    assert.ok(seen!.held > N / 2, `the digest came after the first stream (${seen!.held})`);
    assert.equal(
      seen!.written,
      seen!.held,
      "records stored but not written when the digest was made",
    );
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
