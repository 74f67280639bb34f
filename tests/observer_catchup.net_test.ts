/**
 * An observer watching a server catch up (servers/observe.ts): the records of one catch-up read
 * come as one `location.batch` EVENT (a count, the first few records, what the server holds),
 * not a `location.accepted` JSON line each; the counts add up to what the server stored. And a
 * remote dashboard (dashboard/remote_herd.ts) fed such a stream keeps the server's record count
 * and its sparkline's total. Real sockets: an in-process herd on loopback TCP, an observer dialled
 * over the handshake, a RemoteHerd.
 */

import assert from "node:assert/strict";
import { parseConfig } from "../servers/config.ts";
import { Herd } from "../servers/herd.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";
import { HerdAuth } from "../servers/auth.ts";
import { dialHandshake } from "../servers/handshake.ts";
import { LineSplitter } from "../servers/lines.ts";
import { dialLinkPort } from "../servers/link_port.ts";
import { closeQuietly } from "../servers/io.ts";
import { parseObserverLine } from "../servers/wire.ts";
import type { HerdEvent } from "../servers/events.ts";
import { RemoteHerd } from "../dashboard/remote_herd.ts";
import { ServerSeries } from "../dashboard/series.ts";
import { allWatching, freePorts, TcpClient, waitFor } from "./_helpers/net.ts";

const SECRET = "observer-catchup-secret-0123456789";
const UCLA = "+34.068930-118.445127";
const N = 3000;
/** Records per link write: a stream of N is ~47 reads at least. */
const BATCH = 64;

/** F and M linked over loopback TCP; M's link to F cut, N records loaded at F meanwhile. */
async function herdWithMissedRecords() {
  const [f, m] = freePorts(2);
  const config = parseConfig({
    servers: { F: { port: f, neighbors: ["M"] }, M: { port: m } },
    secret: SECRET,
  });
  const herd = new Herd(config, {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: SECRET,
    tcpLinks: true,
    link: { ...SERVER_DEFAULTS.link, batchRecords: BATCH },
  });
  await herd.start();
  const server = (name: string) => herd.servers.get(name)!;
  await waitFor(() => server("M").links.every((l) => l.up), 10_000, "link up");
  herd.setLink("M", "F", { cut: true });
  await waitFor(() => server("M").links.every((l) => !l.up), 10_000, "link cut");
  const c = await TcpClient.connect(f);
  try {
    let text = "";
    for (let i = 0; i < N; i++) text += `IAMAT c${i} ${UCLA} 1700000000.${i + 1}\n`;
    await c.send(text);
    await c.waitUntil((t) => t.split("\n").length > N, 30_000);
  } finally {
    await c.close();
  }
  assert.equal(server("F").store.size, N);
  assert.equal(server("M").store.size, 0);
  return { herd, config, server, port: m };
}

Deno.test("observer: a catch-up's records come as one location.batch per read, counting every record", async () => {
  const t = await herdWithMissedRecords();
  const conn = await dialLinkPort({ name: "M", host: "127.0.0.1", port: t.port });
  try {
    const splitter = new LineSplitter(64 * 1024 * 1024);
    const r = await dialHandshake(new HerdAuth(SECRET), conn, splitter, "observer", "test", "M");
    assert.ok(r.ok, r.ok ? "" : r.reason);
    const events: HerdEvent[] = [];
    const take = (text: string) => {
      const m = parseObserverLine(text);
      if (m?.type === "EVENT") events.push(m.event);
    };
    for (const l of r.rest) take(l.text);
    const reading = (async () => {
      const buf = new Uint8Array(64 * 1024);
      for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
        for (const l of splitter.push(buf.subarray(0, n))) take(l.text);
      }
    })().catch(() => {});
    t.herd.setLink("M", "F", { cut: false });
    await waitFor(() => t.server("M").store.size === N, 30_000, `M holding ${N}`);
    await waitFor(
      () => events.some((e) => e.kind === "sync.done" && e.peer === "F"),
      10_000,
      "the catch-up's end seen",
    );
    const batches = events.filter((e) => e.kind === "location.batch");
    const received = events.filter((e) => e.kind === "propagation.received" && e.catchUp);
    // The records read before CAUGHTUP are the stream's (peers.ts `#handle`, even in the read
    // that brings it): batches; a live record would have its line after the `sync.done`.
    // Before batches, every record had its line.
    const synced = events.findIndex((e) => e.kind === "sync.done");
    const accepted = events.filter((e) => e.kind === "location.accepted");
    const early = events.slice(0, synced).filter((e) => e.kind === "location.accepted");
    assert.equal(early.length, 0, `${early.length} location.accepted lines in the catch-up`);
    assert.equal(
      batches.reduce((n, b) => n + b.count, 0) + accepted.length,
      N,
      "the batches and the live records count every record",
    );
    assert.ok(accepted.length < N / 4, `${accepted.length} live records`);
    // One per read that stored records: never more than the reads (propagation.received).
    assert.ok(batches.length > 1 && batches.length <= received.length, `${batches.length} batches`);
    for (const b of batches) {
      assert.equal(b.from, "F");
      assert.equal(b.records.length, Math.min(b.count, 8), JSON.stringify(b));
      const rec = b.records[0];
      assert.match(rec.client, /^c\d+$/);
      assert.equal(rec.location, UCLA);
      assert.ok(Math.abs(rec.lat - 34.06893) < 1e-9);
    }
    // Every location event says what M holds: the batches' counts grow to the last read's, the
    // live records' to N.
    const held = [...batches, ...accepted].map((e) => (e as { held: number }).held);
    assert.deepEqual(held, [...held].sort((a, b) => a - b));
    assert.equal(held.at(-1), N);
    const firstBatch = events.findIndex((e) => e.kind === "location.batch");
    const firstRead = events.findIndex((e) => e.kind === "propagation.received");
    assert.ok(firstRead < firstBatch);
    closeQuietly(conn);
    await reading;
  } finally {
    closeQuietly(conn);
    await t.herd.stop();
  }
});

Deno.test("observer: a remote dashboard watching a catch-up keeps the server's count and the sparkline's total", async () => {
  const t = await herdWithMissedRecords();
  const remote = new RemoteHerd(t.config, { secret: SECRET, observer: "test-dash" });
  const series = new ServerSeries(remote, { stepMs: 60_000 });
  try {
    remote.start();
    await waitFor(
      () => allWatching(remote),
      5000,
      "watching",
    );
    const m = () => remote.snapshot().servers.find((s) => s.name === "M")!;
    assert.equal(m().records, 0);
    t.herd.setLink("M", "F", { cut: false });
    await waitFor(() => m().records === N, 30_000, `the remote view counting ${N} at M`);
    // Every record stored at M counts in its sparkline (a point is records a second over 60 s).
    const upd = series.tick().points.M[0];
    assert.equal(upd, Math.round(N * 1000 / 60_000));
    // The records the batches named are on the map, with their coordinates (F's snapshot had
    // only its 2,000 newest: c1000 and up).
    const named = remote.snapshot().records.filter((r) => Number(r.client.slice(1)) < 1000);
    assert.ok(named.length > 0, "no record named by a batch on the map");
    assert.ok(named.every((r) => Math.abs(r.lng + 118.445127) < 1e-9));
  } finally {
    series.close();
    await remote.stop();
    await t.herd.stop();
  }
});
