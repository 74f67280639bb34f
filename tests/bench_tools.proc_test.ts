/**
 * The bench's native tools (bench/native.ts): bench/loadgen.c and bench/echo.c built with `cc`,
 * checked against small servers over loopback. The bench itself is not part of the test suite;
 * this is what CI can check of it in a few seconds.
 *
 * Needs a C compiler (Debian `gcc`): skipped loudly without one, and FAILS under `CI=true`.
 */

import assert from "node:assert/strict";
import { buildNative, ccAvailable, runLoadgen, startNativeEcho } from "../bench/native.ts";

const CI = Deno.env.get("CI") === "true";
const HAVE_CC = await ccAvailable();
if (!HAVE_CC) {
  console.error(
    "\n!!! bench_tools.proc_test: no `cc` on PATH (apt-get install gcc): the native bench tools are " +
      (CI ? "untested -- and CI=true, so it FAILS instead\n" : "NOT TESTED (skipped)\n"),
  );
}
const ignore = !HAVE_CC && !CI;

/** A Deno line server on loopback that records every line and answers each with `reply(line)`. */
function lineServer(reply: (line: string) => string) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const lines: string[] = [];
  /** Most lines ever received on one connection without its reply having been written. */
  let maxUnanswered = 0;
  const conns = new Set<Deno.Conn>();
  const serving = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      (async () => {
        const buf = new Uint8Array(65536);
        let tail = "";
        try {
          while (true) {
            const n = await conn.read(buf);
            if (n === null) break;
            const parts = (tail + new TextDecoder().decode(buf.subarray(0, n))).split("\n");
            tail = parts.pop()!;
            maxUnanswered = Math.max(maxUnanswered, parts.length);
            let out = "";
            for (const line of parts) {
              lines.push(line);
              out += reply(line) + "\n";
            }
            const bytes = new TextEncoder().encode(out);
            for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
          }
        } catch { /* the generator closes its connections at the end */ }
        conns.delete(conn);
        try {
          conn.close();
        } catch { /* closed */ }
      })();
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    lines,
    maxUnanswered: () => maxUnanswered,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await serving.catch(() => {});
    },
  };
}

Deno.test({
  name: "bench tools: loadgen fills the template, keeps one request per connection, counts replies",
  ignore,
  sanitizeResources: false,
  async fn() {
    await using srv = lineServer((line) => `AT ok ${line}`);
    const r = await runLoadgen({
      port: srv.port,
      connections: 4,
      durationMs: 600,
      warmupMs: 100,
      line: "IAMAT c{c}x{n} +34.068930-118.445127 {t} {x}",
    });
    assert.deepEqual([r.connections, r.errors, r.closed], [4, 0, 0]);
    assert.ok(r.requests > 20, `only ${r.requests} requests in 600 ms`);
    assert.ok(r.throughput > 0 && r.p50 > 0 && r.p99 >= r.p50 && r.max >= r.p99, JSON.stringify(r));
    // The server saw at least every request counted, each line filled in.
    assert.ok(srv.lines.length >= r.requests);
    assert.deepEqual(srv.maxUnanswered(), 1, "one outstanding request per connection");
    const re = /^IAMAT c([0-3])x(\d+) \+34\.068930-118\.445127 (\d+\.\d{9}) (-?\d+\.\d{3})$/;
    for (const l of srv.lines) assert.match(l, re);
    // Per connection: {n} counts 0, 1, 2, ...; {t} strictly increases; {x} moves every request.
    for (const c of ["0", "1", "2", "3"]) {
      const mine = srv.lines.map((l) => re.exec(l)!).filter((m) => m[1] === c);
      assert.ok(mine.length > 2, `connection ${c} sent ${mine.length} lines`);
      mine.forEach((m, i) => assert.deepEqual(Number(m[2]), i));
      for (let i = 1; i < mine.length; i++) {
        assert.ok(
          Number(mine[i][3]) > Number(mine[i - 1][3]),
          `time not increasing: ${mine[i][3]}`,
        );
        assert.ok(mine[i][4] !== mine[i - 1][4]);
      }
    }
  },
});

Deno.test({
  name: "bench tools: loadgen counts `?` and `-ERR` replies as errors, not as requests",
  ignore,
  sanitizeResources: false,
  async fn() {
    let i = 0;
    await using srv = lineServer(() => (i++ % 2 === 0 ? "? nope" : "-ERR no"));
    const r = await runLoadgen({ port: srv.port, connections: 2, durationMs: 300, line: "X {n}" });
    assert.deepEqual(r.requests, 0);
    assert.ok(r.errors > 10, `errors ${r.errors}`);
    assert.match(r.errorSample, /^(\? nope|-ERR no)/);
  },
});

Deno.test({
  name: "bench tools: loadgen's open loop keeps the asked rate",
  ignore,
  sanitizeResources: false,
  async fn() {
    await using srv = lineServer((line) => line);
    const r = await runLoadgen({
      port: srv.port,
      connections: 4,
      durationMs: 1000,
      rate: 400,
      line: "ping {c} {n}",
    });
    assert.deepEqual(r.errors, 0);
    // 400 req/s for 1 s: never more than the rate (open loop does not run closed); at least half
    // of it even when a loaded box delays the replies.
    assert.ok(r.requests >= 200 && r.requests <= 404, `requests ${r.requests} at 400/s for 1 s`);
    assert.ok(srv.lines.length <= 420, `sent ${srv.lines.length}: open loop ran closed`);
  },
});

Deno.test({
  name: "bench tools: the C echo server echoes lines, split or batched, to the generator",
  ignore,
  sanitizeResources: false,
  async fn() {
    const { proc, port } = await startNativeEcho(await Deno.makeTempFile({ suffix: ".log" }));
    try {
      // By hand: a line cut in two comes back whole, two lines in one write come back both.
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const enc = new TextEncoder();
      await conn.write(enc.encode("hel"));
      await new Promise((r) => setTimeout(r, 50));
      await conn.write(enc.encode("lo\nworld\n"));
      let got = "";
      const buf = new Uint8Array(64);
      const deadline = Date.now() + 3000;
      while (got !== "hello\nworld\n" && Date.now() < deadline) {
        const n = await conn.read(buf);
        if (n === null) break;
        got += new TextDecoder().decode(buf.subarray(0, n));
      }
      conn.close();
      assert.deepEqual(got, "hello\nworld\n");
      const r = await runLoadgen({
        port,
        connections: 8,
        durationMs: 500,
        threads: 2,
        line: "e {t}",
      });
      assert.deepEqual([r.threads, r.errors, r.closed], [2, 0, 0]);
      assert.ok(r.requests > 100, `echo floor gave ${r.requests} requests in 500 ms`);
    } finally {
      await proc.stop();
    }
  },
});

Deno.test({
  name:
    "bench tools: loadgen's open loop reports latency from the due time and, apart, from the actual send",
  ignore,
  sanitizeResources: false,
  async fn() {
    // Every reply 30 ms late; one connection asked for 100 req/s (one due every 10 ms): each
    // request goes out when the previous reply came, ever later than it was due. The latency
    // from the due time grows with that queue; from the send it stays the server's 30 ms.
    const slow = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const conns: Deno.Conn[] = [];
    const serving = (async () => {
      for await (const conn of slow) {
        conns.push(conn);
        (async () => {
          const buf = new Uint8Array(4096);
          try {
            while ((await conn.read(buf)) !== null) {
              await new Promise((r) => setTimeout(r, 30));
              await conn.write(new TextEncoder().encode("ok\n"));
            }
          } catch { /* closed at the end */ }
        })();
      }
    })();
    try {
      const port = (slow.addr as Deno.NetAddr).port;
      const open = await runLoadgen({
        port,
        connections: 1,
        durationMs: 1000,
        rate: 100,
        line: "x {n}",
      });
      assert.ok(open.requests >= 5, JSON.stringify(open));
      assert.ok(open.sentP50 >= 29, `from the send, p50 ${open.sentP50} ms: the server's 30 ms`);
      // A loaded box delays the 30 ms timers too, and the queue behind them grows the more.
      assert.ok(
        open.sentP99 * 2 < open.p99,
        `from send ${open.sentP99} ms, from due ${open.p99} ms`,
      );
      // Closed loop: each request counts from its own send, so the two agree (one 1% bucket).
      const closed = await runLoadgen({ port, connections: 1, durationMs: 300, line: "x {n}" });
      assert.ok(
        closed.sentP50 <= closed.p50 && closed.sentP50 >= closed.p50 / 1.02,
        JSON.stringify(closed),
      );
    } finally {
      slow.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await serving.catch(() => {});
    }
  },
});

Deno.test({
  name: "bench tools: bad loadgen flags exit 2 with one line; unreachable port exits 1",
  ignore,
  async fn() {
    const bin = await buildNative("loadgen");
    for (const args of [["--bogus", "1"], ["--port", "x"], ["--port", "1"], ["--help"]]) {
      const out = await new Deno.Command(bin, { args, stdout: "piped", stderr: "piped" }).output();
      const err = new TextDecoder().decode(out.stderr);
      assert.deepEqual(out.code, 2, `${args.join(" ")}: exit ${out.code}`);
      assert.deepEqual(err.trim().split("\n").length, 1, err);
      assert.match(err, /^loadgen: /);
    }
    // A port nobody listens on: a free one, closed again.
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    const out = await new Deno.Command(bin, {
      args: ["--port", String(port), "--connections", "1", "--duration-ms", "100", "--line", "x"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.deepEqual(out.code, 1);
    assert.match(new TextDecoder().decode(out.stderr), /cannot connect/);
  },
});

Deno.test("bench: --help prints usage; a bad flag exits 2 with one line", async () => {
  const run = (...args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "bench/run.ts", ...args],
      cwd: new URL("../", import.meta.url).pathname,
      stdout: "piped",
      stderr: "piped",
    }).output();
  const help = await run("--help");
  assert.deepEqual(help.code, 0);
  assert.match(new TextDecoder().decode(help.stdout), /^Usage: deno task bench/);
  for (const args of [["--bogus"], ["--only", "nope"], ["--gen-procs", "x"], ["stray"]]) {
    const out = await run(...args);
    const err = new TextDecoder().decode(out.stderr).trim();
    assert.deepEqual(out.code, 2, `${args.join(" ")}: exit ${out.code}: ${err}`);
    assert.deepEqual(err.split("\n").length, 1, err);
    assert.match(err, /^bench: /);
  }
});

Deno.test("paired: a bad --prewarm-ms (or another bad flag) exits 2 with one line, before any herd starts", async () => {
  for (
    const args of [["--prewarm-ms", "x"], ["--prewarm-ms=-5"], ["--prewarm-ms", "1.5"], ["--bogus"]]
  ) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "bench/paired.ts", ...args],
      cwd: new URL("../", import.meta.url).pathname,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr).trim();
    assert.deepEqual(out.code, 2, `${args.join(" ")}: exit ${out.code}: ${err}`);
    assert.deepEqual(err.split("\n").length, 1, err);
    assert.match(
      err,
      args[0] === "--bogus" ? /^paired: / : /^paired: --prewarm-ms wants an integer >= 0/,
    );
  }
});
