/**
 * Review of the in-process skip (peers.ts `#withoutHeld`) under load: writers on many
 * connections (repeated clients and new ones) at every server while links are delayed, cut and
 * restored and servers stopped and started. After each AT reply read while the herd is healthy
 * (every link up, no late receipt), every server holds that record or a newer one; afterwards
 * every server holds the same record of every client, and no link waits for a receipt.
 */

import assert from "node:assert/strict";
import { startSeedHerd, TcpClient, type TestHerd, waitFor } from "./_helpers/net.ts";
import { compareRecords } from "../servers/record.ts";
import type { AtFields } from "../servers/record.ts";
import { openLogPersistence } from "../servers/persist.ts";
import { SEED_NAMES } from "../servers/seed.ts";

/** The AT fields of an AT reply line. */
function fieldsOf(reply: string): AtFields {
  const [, origin, diff, client, location, time] = reply.trim().split(" ");
  return { origin, diff, client, location, time };
}

/** Every server running, every link up and its receipts waited for (not late: receipts.ts). */
function healthy(t: TestHerd): boolean {
  return [...t.herd.servers.values()].every((s) => s.running && s.links.every((l) => l.awaited));
}

/** Every server running with every link up. */
function linked(t: TestHerd): boolean {
  return [...t.herd.servers.values()].every((s) => s.running && s.links.every((l) => l.up));
}

/** Every running server's record of each client is the same (byte for byte). */
function converged(t: TestHerd, clients: Iterable<string>): string[] {
  const servers = [...t.herd.servers.values()];
  const bad: string[] = [];
  for (const c of clients) {
    const held = servers.map((s) => s.store.get(c));
    const first = held[0];
    if (
      first === undefined || held.some((r) => r === undefined || compareRecords(r, first) !== 0)
    ) {
      bad.push(`${c}: ${held.map((r) => r && `${r.origin} ${r.time} ${r.diff}`).join(" | ")}`);
    }
  }
  return bad;
}

interface Run {
  tries: number;
  checked: number;
  missing: string[];
  clients: Set<string>;
  latencies: number[];
}

/**
 * Writers, each on its own connection to a server (round robin), IAMAT `rounds` times: a third
 * reuse a client ID of their own (repeated clients), a third take a new one each time, and a third
 * share one client ID from different servers (each other's reports replace theirs, or make theirs
 * stale).
 * After each reply read in a healthy herd with no late receipt since the IAMAT was sent, every
 * server must hold the record or a newer one.
 */
async function writers(
  t: TestHerd,
  n: number,
  rounds: number,
  stop: () => boolean,
  late: () => number,
  stored: ReadonlySet<string>,
): Promise<Run> {
  const run: Run = { tries: 0, checked: 0, missing: [], clients: new Set(), latencies: [] };
  const base = Math.floor(Date.now() / 1000) - 100;
  await Promise.all(Array.from({ length: n }, async (_, w) => {
    const name = SEED_NAMES[w % SEED_NAMES.length];
    const kind = w % 3;
    let c: TcpClient | undefined;
    let k = 0;
    for (let i = 0; i < rounds && !stop(); i++) {
      try {
        if (c === undefined) {
          c = await TcpClient.connect(t.port(name));
          k = 0;
        }
        const client = kind === 0 ? `rep-${w}` : kind === 1 ? `new-${w}-${i}` : "shared";
        const wasHealthy = healthy(t);
        const lateBefore = late();
        const sent = performance.now();
        await c.send(
          `IAMAT ${client} +34.068930-118.445127 ${base}.${String(i).padStart(6, "0")}${
            String(w).padStart(2, "0")
          }\n`,
        );
        const reply = (await c.replies(k + 1, 20_000))[k];
        k++;
        run.latencies.push(performance.now() - sent);
        run.tries++;
        if (!reply.startsWith("AT ")) continue;
        run.clients.add(client);
        if (!wasHealthy || !healthy(t) || late() !== lateBefore) continue;
        // The shared client is checked for convergence only. Its reports race each other from
        // different servers, and a record that a newer one overtook (a stale IAMAT, answered at
        // once; a record replaced before it was sent, whose receipt the newer one's stands for;
        // a neighbour holding the newer one) is answered before the newer one's flood has
        // reached every server: the neighbour's receipt vouches for it, not for its onward links.
        if (kind === 2 || !stored.has(reply.trim())) continue;
        run.checked++;
        const mine = fieldsOf(reply);
        for (const s of t.herd.servers.values()) {
          const held = s.store.get(client);
          if (held === undefined || compareRecords(held, mine) < 0) {
            run.missing.push(`${s.name} lacks ${reply.trim()} (holds ${held?.time ?? "none"})`);
          }
        }
      } catch {
        // The server was stopped under us: a new connection next round.
        await c?.close().catch(() => {});
        c = undefined;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    await c?.close().catch(() => {});
  }));
  return run;
}

/** Delays, cuts and restores links, and stops and starts servers: `steps` steps. */
async function chaos(t: TestHerd, steps: number): Promise<void> {
  const links = [["Singleton", "Smith"], ["Hill", "Jaquez"], ["Smith", "Campbell"]] as const;
  for (let i = 0; i < steps; i++) {
    const [a, b] = links[i % links.length];
    switch (i % 4) {
      case 0:
        t.herd.setLink(a, b, { delayMs: 30 });
        await new Promise((r) => setTimeout(r, 150));
        t.herd.setLink(a, b, { delayMs: 0 });
        break;
      case 1:
        t.herd.setLink(a, b, { cut: true });
        await new Promise((r) => setTimeout(r, 150));
        t.herd.setLink(a, b, { cut: false });
        break;
      case 2: {
        const name = ["Campbell", "Singleton", "Hill"][i % 3];
        await t.herd.stopServer(name);
        await new Promise((r) => setTimeout(r, 150));
        await t.herd.startServer(name);
        break;
      }
      default:
        await new Promise((r) => setTimeout(r, 150));
    }
    await waitFor(() => linked(t), 20_000, "every link up again");
    // Healthy for a while: the tries checked.
    await new Promise((r) => setTimeout(r, 300));
  }
}

const VARIANTS = [
  // A wide receipt bound: no receipt is late in a herd whose links are up, so none may be.
  { durable: false, receiptWaitMs: 2000 },
  { durable: true, receiptWaitMs: 2000 },
  // The default bound and a tiny one: late receipts void the promise for the tries they touch
  // (those are not checked), the rest must hold.
  { durable: false, receiptWaitMs: 50 },
  { durable: false, receiptWaitMs: 3 },
];

for (const { durable, receiptWaitMs } of VARIANTS) {
  Deno.test(
    `in-process skip under load${
      durable ? ", data dir" : ""
    }, --receipt-wait-ms ${receiptWaitMs}: read-your-writes at every server, through delays, cuts and restarts; then one record per client everywhere`,
    async () => {
      const dir = durable ? await Deno.makeTempDir({ prefix: "review12-load-" }) : undefined;
      const t = await startSeedHerd({
        receiptWaitMs,
        ...(dir === undefined ? {} : { openPersistence: (n) => openLogPersistence(dir, n) }),
      });
      let lateCount = 0;
      const stored = new Set<string>();
      let downs = 0;
      const off = t.herd.bus.subscribe((e) => {
        if (e.kind === "receipt.late") lateCount++;
        if (e.kind === "location.accepted" && e.from === null) {
          const r = e.record;
          stored.add(`AT ${r.origin} ${r.diff} ${r.client} ${r.location} ${r.time}`);
        }
        // A link that goes down is not waited for either: the tries it touches are not checked.
        if (e.kind === "link.down") downs++;
      });
      try {
        let finished = false;
        const load = writers(t, 12, 100_000, () => finished, () => lateCount + downs, stored);
        await chaos(t, 12).finally(() => {
          finished = true;
        });
        const run = await load;
        assert.deepEqual(run.missing.slice(0, 10), [], `${run.missing.length} misses`);
        if (receiptWaitMs >= 2000) {
          assert.equal(lateCount, 0, "late receipts with every link up");
          assert.ok(run.checked >= run.tries / 4, `${run.checked} of ${run.tries} tries checked`);
        } else {
          assert.ok(run.checked >= 100, `${run.checked} of ${run.tries} tries checked`);
        }
        await waitFor(() => linked(t), 20_000, "every link up");
        await waitFor(() => converged(t, run.clients).length === 0, 20_000, "convergence").catch(
          (err) => {
            throw new Error(`${err.message}: ${converged(t, run.clients).slice(0, 5).join("; ")}`);
          },
        );
        // Every receipt came or was given up: nothing is left waiting on any link.
        await waitFor(
          () =>
            [...t.herd.servers.values()].every((s) =>
              s.links.every((l) => l.stats().unacked === 0)
            ),
          10_000,
          "no receipt outstanding",
        );
        const sorted = run.latencies.sort((a, b) => a - b);
        console.log(
          `tries ${run.tries}, checked ${run.checked}, late receipts ${lateCount}, ` +
            `reply ms p50 ${sorted[sorted.length >> 1].toFixed(1)} p99 ${
              sorted[Math.floor(sorted.length * 0.99)].toFixed(1)
            } max ${sorted[sorted.length - 1].toFixed(1)}`,
        );
      } finally {
        off();
        await t.close();
        if (dir !== undefined) await Deno.remove(dir, { recursive: true });
      }
    },
  );
}
