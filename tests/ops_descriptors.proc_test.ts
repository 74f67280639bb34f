/**
 * The ops endpoint (`server --ops-port`) must not let idle HTTP connections take the process
 * down. It is served by `Deno.serve` on its own port, which accepts without limit; out of
 * descriptors its accept loop rejects with "Http: Too many open files", uncaught, and the whole
 * server process exited. Now every HTTP port goes through servers/http_front.ts (the dashboard's
 * already did). Found by the third adversarial review (tmp_adv3/opsflood.py).
 */

import assert from "node:assert/strict";
import { ProcessHerd, stablePorts, underUlimit } from "./_helpers/procs.ts";
import { exchange, TcpClient } from "./_helpers/net.ts";
import { rawRequest } from "./_helpers/http_raw.ts";

const OPEN_FILES = 256;
const FLOOD = 300;

Deno.test("ops endpoint: 300 idle connections to --ops-port under ulimit -n 256 do not end the server", async () => {
  const [opsPort] = stablePorts(1);
  const herd = await ProcessHerd.create({
    topology: { Hill: [] },
    args: () => ["--ops-port", String(opsPort)],
    wrap: () => underUlimit(OPEN_FILES),
  });
  const conns: TcpClient[] = [];
  try {
    const hill = await herd.start("Hill");
    for (let i = 0; i < FLOOD; i++) {
      try {
        conns.push(await TcpClient.connect(opsPort));
      } catch {
        break; // the backlog is full: enough
      }
    }
    await new Promise((r) => setTimeout(r, 2000));
    assert.ok(!hill.exited, `the server is still running (stderr: ${hill.stderr.trim()})`);
    await Promise.all(conns.map((c) => c.close()));
    conns.length = 0;
    const reply = await exchange(herd.port("Hill"), "IAMAT ops.flood +1+1 1700000000\n");
    assert.match(reply, /^AT Hill /);
    // And the ops port itself serves again (its idle connections are gone).
    let status = 0;
    const deadline = Date.now() + 10_000;
    while (status !== 200 && Date.now() < deadline) {
      const res = await fetch(`http://127.0.0.1:${opsPort}/healthz`, {
        signal: AbortSignal.timeout(5_000),
      }).catch(() => undefined);
      status = res?.status ?? 0;
      await res?.body?.cancel();
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(status, 200, "/healthz on the ops port answers 200 once the flood is gone");
  } finally {
    await Promise.all(conns.map((c) => c.close()));
    await herd.close();
  }
});

// Fourth adversarial review: the ops port drew on the clients' descriptor share, so clients
// filling it made /healthz answer 503 "server busy", and a liveness probe would restart a herd
// that was only busy.
Deno.test("ops endpoint: /healthz answers 200 while herd clients fill the client share (ulimit -n 256)", async () => {
  const [opsPort] = stablePorts(1);
  const herd = await ProcessHerd.create({
    topology: { Hill: [] },
    args: () => ["--ops-port", String(opsPort), "--max-connections", "1000"],
    wrap: () => underUlimit(OPEN_FILES),
  });
  const conns: TcpClient[] = [];
  try {
    const hill = await herd.start("Hill");
    const port = herd.port("Hill");
    // Clients until the server refuses one for the process's client share.
    let refused = "";
    for (let i = 0; i < FLOOD && refused === ""; i++) {
      const c = await TcpClient.connect(port);
      conns.push(c);
      await c.send(`IAMAT fill.${i} +1+1 1700000000\n`);
      const got = await c.waitUntil((text) => text.includes("\n"), 5_000).catch(() => c.received);
      if (got.startsWith("? server busy")) refused = got;
    }
    assert.match(refused, /^\? server busy: too many open connections/);
    // Three probes in a row, each answered 200.
    for (let i = 0; i < 3; i++) {
      const res = await rawRequest(opsPort, "/healthz", { ms: 5_000 });
      assert.equal(res.status, 200, `probe ${i} with the client share full: ${res.body}`);
    }
    assert.ok(!hill.exited, hill.stderr);
  } finally {
    await Promise.all(conns.map((c) => c.close()));
    await herd.close();
  }
});
