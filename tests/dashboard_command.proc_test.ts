/**
 * The console's transport (dashboard/command.ts) against a server that never accepts: its
 * accept queue is full, so the kernel drops our SYNs and the connect stays pending. The
 * command's deadline must cover the connect too (it once covered only the read: the console
 * hung for minutes).
 */

import assert from "node:assert/strict";
import { sendCommand } from "../dashboard/command.ts";

Deno.test({
  name: "console command: the deadline covers a connect that never completes",
  // The dropped connect stays pending in the kernel after the test; it is closed when it lands.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // Python listens with a backlog of 0 and never accepts: one connection fills the queue.
    const py = new Deno.Command("python3", {
      args: [
        "-c",
        "import socket,time\n" +
        "s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(0)\n" +
        "print(s.getsockname()[1], flush=True)\n" +
        "time.sleep(60)\n",
      ],
      stdout: "piped",
    }).spawn();
    const fill: Deno.TcpConn[] = [];
    try {
      const reader = py.stdout.getReader();
      const { value } = await reader.read();
      reader.releaseLock();
      const port = Number(new TextDecoder().decode(value).trim());
      assert.ok(port > 0, "python listener's port");
      // Fill the accept queue until a connect stays pending (bounded: at most 8 tries).
      let pending = false;
      for (let i = 0; i < 8 && !pending; i++) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const c = await Promise.race([
          Deno.connect({ hostname: "127.0.0.1", port }),
          new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 300))),
        ]);
        clearTimeout(timer);
        if (c === undefined) pending = true;
        else fill.push(c);
      }
      assert.ok(pending, "the listener's accept queue never filled");

      const started = performance.now();
      let guard: ReturnType<typeof setTimeout> | undefined;
      const result = await Promise.race([
        sendCommand("127.0.0.1", port, "IAMAT kiwi +1+1 1", 500),
        new Promise<"hung">((r) => (guard = setTimeout(() => r("hung"), 5_000))),
      ]);
      clearTimeout(guard);
      const ms = performance.now() - started;
      assert.notEqual(result, "hung", "sendCommand ignored its 500 ms deadline during connect");
      assert.ok(typeof result === "object");
      assert.match(result.error ?? "", /timed out after 500 ms/);
      assert.equal(result.reply, "");
      assert.ok(ms < 3_000, `answered after ${Math.round(ms)} ms`);
    } finally {
      for (const c of fill) c.close();
      py.kill();
      await py.status;
    }
  },
});
