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
