/** Bounds on waits (servers/timeout.ts), over a real loopback connection where one is needed. */

import assert from "node:assert/strict";
import { closeAfter, withTimeout } from "../servers/timeout.ts";

Deno.test("timeout: withTimeout passes a prompt value and error through", async () => {
  assert.deepEqual(await withTimeout(Promise.resolve(7), 1000), 7);
  let caught: unknown;
  await withTimeout(Promise.reject(new Error("own")), 1000).catch((e) => (caught = e));
  assert.deepEqual((caught as Error).message, "own");
});

Deno.test("timeout: withTimeout rejects at the deadline and hands a late value to onLate", async () => {
  let late: number | undefined;
  let release!: (v: number) => void;
  const slow = new Promise<number>((r) => (release = r));
  let caught: unknown;
  await withTimeout(slow, 20, { onLate: (v) => (late = v) }).catch((e) => (caught = e));
  assert.deepEqual((caught as Error).message, "timed out after 20 ms");
  release(5);
  await slow;
  await Promise.resolve();
  assert.deepEqual(late, 5);
  caught = undefined;
  await withTimeout(new Promise(() => {}), 10, { error: () => new Error("stalled") })
    .catch((e) => (caught = e));
  assert.deepEqual((caught as Error).message, "stalled");
});

Deno.test("timeout: closeAfter ends a pending read on a silent connection, and says so", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const other = await accepted;
  try {
    const timer = closeAfter(conn, 50);
    const started = performance.now();
    let ended = "eof";
    try {
      await conn.read(new Uint8Array(16));
    } catch {
      ended = "closed";
    }
    timer.clear();
    assert.ok(timer.expired, "the deadline fired");
    assert.deepEqual(ended, "closed");
    assert.ok(performance.now() - started < 30_000, "bounded");
    // Cleared in time: nothing is closed.
    const kept = closeAfter(other, 50);
    kept.clear();
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(kept.expired, false);
    await other.write(new Uint8Array([1]));
  } finally {
    other.close();
    listener.close();
  }
});
