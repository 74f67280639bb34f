/**
 * servers/connection.ts over real sockets, with a handler of the test's own: the partial-line
 * clock judges the client only while the server waits in `read` for it, never while the server
 * itself holds the client off (waiting for its turn or for its replies to drain).
 */

import assert from "node:assert/strict";
import { ClientConnection, type ConnectionOptions } from "../servers/connection.ts";
import type { SplitLine } from "../servers/lines.ts";
import { startSeedHerd, TcpClient, waitFor } from "./_helpers/net.ts";

function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // a slow command: synchronous work, as an offline search with a large radius
  }
}

/**
 * Client connections over a real listener. Each line is answered with its first word and its
 * length, so a line split in two shows as two replies; `SLOW` lines take `slowMs` of CPU each;
 * `HOLD` lines are answered only once `release()` is called (their replies stay pending).
 */
function startLineServer(opts: Partial<ConnectionOptions>, slowMs = 15) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<ClientConnection>();
  const held: (() => void)[] = [];
  const handler = {
    handleLine(line: SplitLine): string | Promise<string> | null {
      if (line.text === "") return null;
      if (line.text.startsWith("SLOW")) busy(slowMs);
      if (line.text.startsWith("BIG")) return "b".repeat(256 * 1024 - 1) + "\n";
      // A bug that throws (or rejects with) a value with no text form.
      if (line.text === "THROW") throw Object.create(null);
      if (line.text === "REJECT") return Promise.reject(Object.create(null));
      const reply = `${line.text.split(" ")[0]} ${line.text.length}\n`;
      if (line.text.startsWith("HOLD")) {
        return new Promise((resolve) => held.push(() => resolve(reply)));
      }
      return reply;
    },
    handshake: () => Promise.resolve(false),
  };
  const options: ConnectionOptions = {
    lineLimit: 64 * 1024,
    partialLineMs: 500,
    idleTimeoutMs: 0,
    maxPendingReplies: 1024,
    ...opts,
  };
  const accepting = (async () => {
    let id = 0;
    for await (const conn of listener) {
      const client = new ClientConnection(conn, ++id, handler, options);
      conns.add(client);
      client.run().finally(() => conns.delete(client));
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    /** Answers the `HOLD` lines so far. */
    release: () => held.splice(0).forEach((answer) => answer()),
    held: () => held.length,
    /** Connections still open. */
    open: () => conns.size,
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      for (const c of conns) c.close();
    },
  };
}

/** `n` lines of `len` bytes each (LF excluded), `V<i> xxx…`. */
function victimLines(n: number, len: number): { text: string; expected: string[] } {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const head = `V${i} `;
    lines.push(head + "x".repeat(len - head.length));
  }
  return {
    text: lines.map((l) => l + "\n").join(""),
    expected: lines.map((_, i) => `V${i} ${len}\n`),
  };
}

Deno.test("a pipelined line is not cut in two while its connection waits for its turn", async () => {
  // Lines of 1,000 bytes: every 16 KiB read ends inside one, and each read is pipelined, so
  // it waits behind the hogs for a turn (10 hogs x 15 ms per turn ~ 150 ms) while the rest of
  // that line sits unread in the socket. The partial-line timer (40 ms) must not run meanwhile.
  await using server = startLineServer({ partialLineMs: 40 });
  const hogs: TcpClient[] = [];
  try {
    for (let i = 0; i < 10; i++) hogs.push(await TcpClient.connect(server.port));
    await Promise.all(hogs.map((hog) => hog.send("SLOW\n".repeat(100))));
    // The hogs are queued for turns once they have answered something.
    await Promise.all(hogs.map((hog) => hog.replies(1, 20_000)));
    const victim = await TcpClient.connect(server.port);
    const { text, expected } = victimLines(48, 1000);
    await victim.send(text);
    const replies = await victim.replies(expected.length, 30_000).catch(() =>
      victim.received.split(/(?<=\n)/)
    );
    // Give a split (one line answered as two) time to show as extra replies.
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(victim.received.split(/(?<=\n)/), expected, `got ${replies.length} replies`);
    await victim.close();
  } finally {
    for (const hog of hogs) await hog.close();
  }
});

Deno.test("the rest of a line that arrived while our event loop was stalled is read first", async () => {
  await using server = startLineServer({ partialLineMs: 150 });
  const c = await TcpClient.connect(server.port);
  await c.send("V0 " + "x".repeat(97));
  await new Promise((r) => setTimeout(r, 50));
  // The rest arrives, then the process stalls past the timer's deadline (but not so far that
  // the timer counts as late): the timer and the read are both due at once.
  await c.send("y".repeat(100) + "\n");
  busy(140);
  await c.replies(1, 5000);
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(c.received, "V0 200\n");
  await c.close();
});

Deno.test("a line is not cut in two while its connection waits for its replies to drain", async () => {
  // Two replies pending is the limit: after the HOLDs the server stops reading (backpressure)
  // with V0's head split off, while the rest of V0 sits in the socket for well over 40 ms.
  await using server = startLineServer({ partialLineMs: 40, maxPendingReplies: 2 });
  const c = await TcpClient.connect(server.port);
  await c.send("HOLD\nHOLD\nV0 " + "x".repeat(47));
  await waitFor(() => server.held() === 2, 5000, "both HOLDs handled");
  await c.send("y".repeat(50) + "\n");
  await new Promise((r) => setTimeout(r, 300));
  server.release();
  await c.replies(3, 5000);
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(c.received, "HOLD 4\nHOLD 4\nV0 100\n");
  await c.close();
});

Deno.test("a partial line followed by silence is still answered after partialLineMs", async () => {
  await using server = startLineServer({ partialLineMs: 100 });
  const c = await TcpClient.connect(server.port);
  const sent = performance.now();
  await c.send("V0 " + "x".repeat(7));
  await c.replies(1, 5000);
  const waited = performance.now() - sent;
  assert.ok(waited >= 95, `answered after ${waited.toFixed(0)} ms`);
  // The bytes that follow start a new line, as docs/protocol.md says.
  await c.send("tail\n");
  await c.replies(2, 5000);
  assert.deepEqual(c.received, "V0 10\ntail 4\n");
  await c.close();
});

Deno.test("idle timeout: time spent on the client's pending reply is not its silence", async () => {
  // The reply to HOLD is pending (the server holds the client off) for 1 s, over two idle
  // periods; the client's silence starts when its reply goes out, so it is closed 400 ms later.
  await using server = startLineServer({ idleTimeoutMs: 400, maxPendingReplies: 1 });
  const c = await TcpClient.connect(server.port);
  await c.send("HOLD\n");
  await waitFor(() => server.held() === 1, 5000, "the HOLD handled");
  await new Promise((r) => setTimeout(r, 1000));
  server.release();
  const released = performance.now();
  await c.replies(1, 5000);
  await c.waitEof(5000);
  const after = performance.now() - released;
  assert.deepEqual(c.received, "HOLD 4\n");
  // Late timers (a loaded machine) each wait one more period, hence the loose upper bound.
  assert.ok(after >= 350 && after < 4000, `closed ${after.toFixed(0)} ms after the reply`);
});

Deno.test("idle timeout: a keep-alive that arrived just before our own short stall counts", async () => {
  // The stall ends ~60 ms past the deadline: not late enough for the timer to count as late,
  // so only reading what arrived before judging keeps the connection open.
  await using server = startLineServer({ idleTimeoutMs: 300 });
  const c = await TcpClient.connect(server.port);
  const opened = performance.now();
  await new Promise((r) => setTimeout(r, 250));
  await c.send("\n");
  busy(Math.max(0, opened + 360 - performance.now()));
  await new Promise((r) => setTimeout(r, 150));
  assert.ok(!c.eof, "closed although a keep-alive was waiting unread");
  await c.waitEof(5000);
  assert.ok(performance.now() - opened >= 500, "the keep-alive restarted the idle clock");
  await c.close();
});

Deno.test("idle timeout: a client that never reads its replies is closed once our write stalls", async () => {
  // 256 replies of 256 KiB (64 MiB) fill both sockets' buffers (loopback's receive buffer
  // grows to tcp_rmem's maximum, 32 MiB on Debian): the write stops moving. Before,
  // a write in flight counted as our own work, so such a client held its connection forever.
  await using server = startLineServer({ idleTimeoutMs: 400 });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await conn.write(new TextEncoder().encode("BIG\n".repeat(256)));
  await waitFor(() => server.open() === 0, 15_000, "the stalled writer closed");
  conn.close();
});

Deno.test("idle timeout: a client that reads its replies slowly is not closed", async () => {
  // 64 MiB of replies, more than both sockets' buffers hold, read 1 MiB every 20 ms (longer in
  // all than the period): each partial write moves as the client reads, so it is never judged
  // stalled. The kernel wakes a writer once a third of its send buffer (4 MiB) is free.
  await using server = startLineServer({ idleTimeoutMs: 1000 });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await conn.write(new TextEncoder().encode("BIG\n".repeat(256)));
  const buf = new Uint8Array(1024 * 1024);
  let got = 0;
  const want = 256 * 256 * 1024;
  const deadline = performance.now() + 60_000;
  while (got < want && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    const n = await conn.read(buf);
    if (n === null) break;
    got += n;
  }
  assert.equal(got, want, "every reply byte arrived before the connection closed");
  conn.close();
});

Deno.test("a handler that throws or rejects with a value that has no text form costs that line a `?`, never the connection or its later replies", async () => {
  // Before, the report of the bug (`${err}`) threw in turn: the read loop ended, or the rejected
  // reply's slot was never filled and every later reply waited behind it for ever.
  await using server = startLineServer({});
  const c = await TcpClient.connect(server.port);
  await c.send("THROW\nV1 abc\nREJECT\nV2 abcd\n");
  const replies = await c.replies(4, 5000);
  assert.deepEqual(replies, ["? THROW\n", "V1 6\n", "? REJECT\n", "V2 7\n"]);
  await c.close();
});

/** Connects `n` hogs that keep the shared turn queue busy (`lines` SLOW lines each). */
async function startHogs(port: number, n: number, lines: number): Promise<TcpClient[]> {
  const hogs: TcpClient[] = [];
  for (let i = 0; i < n; i++) hogs.push(await TcpClient.connect(port));
  await Promise.all(hogs.map((hog) => hog.send("SLOW\n".repeat(lines))));
  return hogs;
}

// Turns run back to back, one per event-loop iteration; the runtime polls sockets only every few
// dozen iterations unless the loop gets to wait, so 15 ms turns left reads ~1 s stale while
// timers ran on time.

Deno.test("a busy turn queue does not starve reads: the rest of a line is read in time", async () => {
  await using server = startLineServer({ partialLineMs: 600 }, 15);
  const c = await TcpClient.connect(server.port);
  // The head is read at once (nothing else to do yet), which starts the partial-line clock.
  await c.send("V0 " + "x".repeat(20));
  const sent = performance.now();
  const hogs = await startHogs(server.port, 10, 100);
  try {
    await new Promise((r) => setTimeout(r, 200 - (performance.now() - sent)));
    await c.send("y".repeat(20) + "\n");
    await c.replies(1, 20_000);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(c.received, "V0 43\n");
    await c.close();
  } finally {
    for (const hog of hogs) await hog.close();
  }
});

Deno.test("a busy turn queue does not starve reads: keep-alives keep a client open", async () => {
  await using server = startLineServer({ idleTimeoutMs: 300 }, 15);
  const hogs = await startHogs(server.port, 10, 100);
  try {
    const c = await TcpClient.connect(server.port);
    for (let i = 0; i < 30 && !c.eof; i++) {
      await c.send("\n").catch(() => {});
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(!c.eof, "closed as idle while its keep-alives were waiting unread");
    await c.close();
  } finally {
    for (const hog of hogs) await hog.close();
  }
});

Deno.test("a whole herd: a line whose rest arrived during a 250 ms stall of ours is one command (adversarial review)", async () => {
  await using t = await startSeedHerd();
  const results: string[] = [];
  for (let i = 0; i < 3; i++) {
    const c = await TcpClient.connect(t.port("Hill"));
    try {
      await c.send(`IAMAT late.partial.${i} +34.068930-118.445127`);
      await new Promise((r) => setTimeout(r, 350));
      await c.send(` 1621464827.5\n`);
      busy(250);
      const text = await c.waitUntil((r) => r.includes("\n"), 5000);
      // Give a wrongly split line's second reply time to arrive too.
      await new Promise((r) => setTimeout(r, 200));
      results.push(c.received || text);
    } finally {
      await c.close();
    }
  }
  for (const [i, r] of results.entries()) {
    assert.match(
      r,
      new RegExp(
        `^AT Hill \\S+ late\\.partial\\.${i} \\+34\\.068930-118\\.445127 1621464827\\.5\\n$`,
      ),
      `try ${i}: the line was cut by the partial-line timer: ${JSON.stringify(r)}`,
    );
  }
});

Deno.test("an IAMAT without LF is timed when its bytes arrived, not when the partial-line wait ended", async () => {
  // CS 131's sample echo client and several student clients send a command with neither LF nor
  // EOF; the server takes it after the 500 ms partial-line wait, but its receive time (the AT
  // diff) is when its bytes came, as for the same line sent with LF.
  await using h = await startSeedHerd();
  await using c = await TcpClient.connect(h.port("Hill"));
  for (const [i, end] of ["", "\n"].entries()) {
    const ms = Date.now();
    const time = `${Math.floor(ms / 1000)}.${String(ms % 1000).padStart(3, "0")}`;
    const before = c.received.length;
    await c.send(`IAMAT partial${i}.kiwi +34.068930-118.445127 ${time}${end}`);
    const reply = (await c.waitUntil((r) => r.length > before && r.endsWith("\n"), 5000))
      .slice(before);
    // The client's time is truncated to the millisecond, so the diff is a little positive; the
    // 500 ms wait would make it about 0.5.
    const diff = Number(reply.split(" ")[2]);
    assert.ok(
      diff >= 0 && diff < 0.25,
      `diff ${diff} s (line end ${JSON.stringify(end)}): ${reply}`,
    );
  }
});

Deno.test("input budget: unfinished lines held past the process's budget are closed; ordinary clients are served (adversarial review)", async () => {
  // 2,500 connections that had each sent 64 KB without a LF held 119 MB of unfinished lines:
  // the line limit bounds one connection only.
  const { inputBudget } = await import("../servers/connection_input.ts");
  const saved = inputBudget.bytes;
  inputBudget.bytes = 1024 * 1024;
  const cutsBefore = inputBudget.cuts;
  await using s = startLineServer({ partialLineMs: 500 });
  const hogs: TcpClient[] = [];
  try {
    // 40 unfinished lines of 60 KB: 2.4 MB against a 1 MiB budget.
    for (let i = 0; i < 40; i++) {
      const c = await TcpClient.connect(s.port);
      hogs.push(c);
      await c.send(`HOG${i} ` + "x".repeat(60_000));
    }
    await waitFor(() => hogs.filter((c) => c.eof).length >= 20, 10_000, "hogs closed");
    // Held now: no more than the budget plus the one line that crossed it.
    assert.ok(inputBudget.total <= 1024 * 1024 + 64 * 1024, `held ${inputBudget.total}`);
    assert.ok(inputBudget.cuts - cutsBefore >= 20);
    // An ordinary client holds a few bytes: served while the budget is full.
    const c = await TcpClient.connect(s.port);
    await c.send("PING one\nPI");
    await c.send("NG two\n");
    await c.waitUntil((r) => r === "PING 8\nPING 8\n", 5_000);
    await c.close();
    // A hog that keeps its connection finishes its line: answered.
    const alive = hogs.find((h) => !h.eof)!;
    await alive.send("\n");
    await alive.waitUntil((r) => /^HOG\d+ 6000\d\n$/.test(r), 5_000);
  } finally {
    for (const c of hogs) await c.close();
    inputBudget.bytes = saved;
  }
  // Everything held is given back when the connections go.
  await waitFor(() => inputBudget.total === 0, 5_000, "input released");
});

Deno.test("input budget: a final unterminated line taken at EOF leaves the budget while earlier replies are still owed (review14)", async () => {
  // At EOF the splitter hands over its last line at once, but the connection stays until every
  // reply is written: the line's bytes stayed counted as unfinished input all that time (a
  // client that half-closes behind a slow command held phantom budget, which closes others).
  const { inputBudget } = await import("../servers/connection_input.ts");
  await using s = startLineServer({ partialLineMs: 0 });
  const c = await TcpClient.connect(s.port);
  try {
    await c.send("HOLD\n" + "x".repeat(40_000));
    await waitFor(() => s.held() === 1 && inputBudget.total === 40_000, 5_000, "line held");
    await c.conn.closeWrite();
    // The final line is answered (behind the HOLD); nothing of it is unfinished any more.
    await waitFor(() => inputBudget.total === 0, 5_000, "the final line out of the budget");
    s.release();
    const want = "HOLD 4\n" + "x".repeat(40_000) + " 40000\n";
    await c.waitUntil((r) => r === want, 5_000);
  } finally {
    await c.close();
  }
  await waitFor(() => inputBudget.total === 0, 5_000, "input released");
});

Deno.test("input budget: a line the partial-line timer takes leaves the budget while the connection stays (review14)", async () => {
  const { inputBudget } = await import("../servers/connection_input.ts");
  await using s = startLineServer({ partialLineMs: 100 });
  const c = await TcpClient.connect(s.port);
  try {
    await c.send("y".repeat(30_000));
    await c.waitUntil((r) => r === "y".repeat(30_000) + " 30000\n", 5_000);
    assert.equal(inputBudget.total, 0);
    // The connection goes on: its next line is read and answered as usual.
    await c.send("z".repeat(20_000) + "\n");
    await c.waitUntil((r) => r.endsWith("z".repeat(20_000) + " 20000\n"), 5_000);
    assert.equal(inputBudget.total, 0);
  } finally {
    await c.close();
  }
});
