/**
 * Found by a review of this session's changes (review11 #2): a server of `start` stopped and started in the process (the dashboard's
 * stop/start, Herd.stopServer/startServer) flushes its log at the stop but never writes `C 1`
 * (only RecordLog.close does). Its next load sees a log without a clean stop, reports
 * "unclean-stop" and takes a fresh epoch, so both neighbours resend their whole logs to it and
 * take all of its log again: every in-process restart costs a full resync, though nothing was
 * owed (everything was flushed at the stop).
 */

import assert from "node:assert/strict";
import { startSeedHerd, TcpClient, waitFor } from "./_helpers/net.ts";
import { openLogPersistence } from "../servers/persist.ts";
import type { ErrorEvent } from "../servers/events.ts";

const CLIENTS = 500;

Deno.test("start: a server stopped and started in the process with nothing owed keeps its epoch (no full resync)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "review11-restart-" });
  const h = await startSeedHerd({ openPersistence: (name) => openLogPersistence(dir, name) });
  try {
    const t = Math.floor(Date.now() / 1000) - 5;
    await using c = await TcpClient.connect(h.port("Hill"));
    await c.send(
      Array.from({ length: CLIENTS }, (_, i) => `IAMAT r${i} +1+1 ${t}\n`).join(""),
    );
    await c.replies(CLIENTS, 30_000);
    await waitFor(
      () => h.herd.snapshot(0).servers.every((s) => s.records >= CLIENTS),
      30_000,
      "every server to hold the clients",
    );
    const hill = h.herd.servers.get("Hill")!;
    const epoch = hill.store.epoch;
    await h.herd.stopServer("Hill");
    const errors: ErrorEvent[] = [];
    let resent = 0;
    const off = h.herd.bus.subscribe((e) => {
      if (e.kind === "error" && e.server === "Hill") errors.push(e);
      if (e.kind === "propagation.received" && e.server === "Hill" && e.catchUp === true) {
        resent += e.records.length;
      }
    });
    await h.herd.startServer("Hill");
    await waitFor(() => hill.links.every((l) => l.up), 20_000, "Hill's links up");
    await new Promise((r) => setTimeout(r, 1000));
    off();
    assert.deepEqual(
      { epoch: hill.store.epoch, errors: errors.map((e) => e.reason) },
      { epoch, errors: [] },
      `a flushed in-process restart was taken for a crash; neighbours resent ${resent} records ` +
        `to Hill (it holds ${CLIENTS})`,
    );
  } finally {
    await h.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
