/**
 * Lifecycle over real HTTP:
 *
 * - concurrent `POST /api/servers/Hill/stop` and `/start` (a persistent herd, so start awaits
 *   its store) always end consistent: a server reported stopped has its port closed and no
 *   links, on its side or its neighbours'; one reported running listens and relinks;
 * - an event-stream client that stops reading is cut by the hub, and its socket is closed by the
 *   server for real (the client sees EOF or a reset), its subscription gone.
 */

import assert from "node:assert/strict";
import { startSeedHerd, tcpSockets, type TestHerd, waitFor } from "./_helpers/net.ts";
import { openLogPersistence } from "../servers/persist.ts";
import { serveDashboard, type ServedDashboard } from "../dashboard/app.ts";
import type { HubOptions } from "../dashboard/hub.ts";

const ASSETS = { built: false, islands: {}, chunks: [], styleUrl: "/static/style.css" };

async function dashboard(t: TestHerd, hub: HubOptions = {}): Promise<ServedDashboard> {
  return await serveDashboard(t.herd, {
    host: "127.0.0.1",
    port: 0,
    quiet: true,
    assets: ASSETS,
    hub,
  });
}

const TCP_STATES: Record<string, string> = {
  "01": "ESTABLISHED",
  "04": "FIN-WAIT-1",
  "05": "FIN-WAIT-2",
  "06": "TIME-WAIT",
  "07": "CLOSE",
  "08": "CLOSE-WAIT",
  "09": "LAST-ACK",
  "0B": "CLOSING",
};

/** The state of the loopback socket local:remote from /proc/net/tcp ("gone" when absent). */
function tcpState(local: number, remote: number): string {
  const state = tcpSockets().get(`${local}>${remote}`)?.state;
  return state === undefined ? "gone" : TCP_STATES[state] ?? state;
}

async function portOpen(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    return true;
  } catch {
    return false;
  }
}

/** Hill's state as reported, its port, and every link that involves it, agree (bounded wait). */
async function consistent(t: TestHerd, round: number): Promise<boolean> {
  const hill = t.herd.servers.get("Hill")!;
  const running = hill.running;
  const linked = () =>
    [...t.herd.servers.values()].flatMap((s) =>
      s.links.filter((l) => s.name === "Hill" || l.peer === "Hill").map((l) => l.up)
    );
  await waitFor(
    () => running ? linked().every((up) => up) : linked().every((up) => !up),
    6000,
    `round ${round}: Hill ${running ? "running with every link up" : "stopped with no link"}`,
  );
  assert.deepEqual(await portOpen(t.port("Hill")), running, `round ${round}: port vs state`);
  assert.deepEqual(hill.running, running, `round ${round}: state changed while checking`);
  return running;
}

Deno.test("lifecycle: concurrent stop/start over HTTP always ends consistent", async () => {
  const dir = await Deno.makeTempDir({ prefix: "herd-lifecycle-" });
  const t = await startSeedHerd({ openPersistence: (name) => openLogPersistence(dir, name) });
  const d = await dashboard(t);
  try {
    const seen = new Set<boolean>();
    for (let round = 0; round < 15; round++) {
      // Six requests at once, in an order that differs per round.
      const actions = ["stop", "start", "stop", "start", "stop", "start"];
      if (round % 2 === 1) actions.reverse();
      if (round % 3 === 2) actions.push(actions[0]);
      const statuses = await Promise.all(actions.map(async (a) => {
        const res = await fetch(`${d.url}/api/servers/Hill/${a}`, {
          method: "POST",
          headers: { origin: d.url },
        });
        await res.body?.cancel();
        return res.status;
      }));
      for (const s of statuses) assert.ok(s === 200 || s === 409, `status ${s}`);
      seen.add(await consistent(t, round));
    }
    console.log(`ended running in some rounds: ${seen.has(true)}, stopped: ${seen.has(false)}`);
  } finally {
    await d.close();
    await t.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("lifecycle: an event-stream client that stops reading is cut and its socket closed", async () => {
  const t = await startSeedHerd();
  // Cut after 1.5 s without progress; frames every 20 ms so the queue fills fast.
  const d = await dashboard(t, { stallMs: 1500, flushMs: 20, maxFrame: 5000 });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(d.url).port) });
  let stop = false;
  try {
    await conn.write(
      new TextEncoder().encode(`GET /api/events HTTP/1.1\r\nHost: ${new URL(d.url).host}\r\n\r\n`),
    );
    await waitFor(() => d.dashboard.hub.stats().subscribers === 1, 5000, "the subscription");
    // Events worth megabytes, fast: IAMATs with long client names, never read by this client.
    const port = t.port("Hill");
    const feed = (async () => {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      const buf = new Uint8Array(1 << 16);
      for (let i = 0; !stop; i++) {
        const lines = Array.from(
          { length: 200 },
          (_, j) => `IAMAT ${"c".repeat(200)}.${i}.${j} +34.068930-118.445127 ${i}.${j}\n`,
        );
        await c.write(new TextEncoder().encode(lines.join("")));
        await c.read(buf);
      }
      c.close();
    })();
    // Cut: by the hub (its queue stalled) or by the dashboard's front (its writes stalled),
    // whichever notices first; either way the subscription is gone.
    await waitFor(() => d.dashboard.hub.stats().subscribers === 0, 20_000, "the stream cut");
    stop = true;
    await feed;
    // The server closed its socket without waiting for us to read: in the kernel's table it is
    // no longer ESTABLISHED (FIN-WAIT-1 with the unread bytes: the descriptor is gone).
    const ours = (conn.localAddr as Deno.NetAddr).port;
    const dashPort = Number(new URL(d.url).port);
    await waitFor(
      () => tcpState(dashPort, ours) !== "ESTABLISHED",
      5000,
      `the server side closing (still ${tcpState(dashPort, ours)})`,
    );
    // Reading what was queued ends in EOF or a reset, soon.
    const buf = new Uint8Array(1 << 16);
    let received = 0;
    let end = "";
    const deadline = performance.now() + 10_000;
    while (end === "" && performance.now() < deadline) {
      try {
        const n = await conn.read(buf);
        if (n === null) end = "EOF";
        else received += n;
      } catch (err) {
        end = (err as Error).name;
      }
    }
    console.log(`after the cut: ${received} bytes, then ${end}`);
    assert.ok(end !== "", "the server never closed the stream's socket");
    assert.deepEqual(d.dashboard.hub.stats().subscribers, 0);
  } finally {
    stop = true;
    try {
      conn.close();
    } catch {
      // closed
    }
    await d.close();
    await t.close();
  }
});
