/**
 * The receive time never falls behind a same-host client's clock: clients that stamp their
 * time just before sending (python3's `time.time()`, Deno's `Temporal.Now`) never get a negative
 * difference. Real TCP to an in-process herd.
 */

import assert from "node:assert/strict";
import { freePorts } from "./_helpers/net.ts";
import { parseConfig } from "../servers/config.ts";
import { Herd } from "../servers/herd.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";
import { nowNs } from "../servers/clock.ts";

const N = 10_000;
const UCLA = "+34.068930-118.445127";

function python3(): string | undefined {
  try {
    const out = new Deno.Command("python3", { args: ["-c", "print(1)"] }).outputSync();
    return out.success ? "python3" : undefined;
  } catch {
    return undefined;
  }
}
const PY = python3();
const IN_CI = Deno.env.get("CI") === "true";
if (PY === undefined) {
  console.error(
    "\n!!! python3 is missing: the same-host python client clock test is SKIPPED (apt-get install python3)\n",
  );
}

/**
 * One server alone: the clock is what is tested, and 10,000 IAMATs flooding a herd would only
 * load the machine the rest of the suite shares.
 */
async function startSolo(): Promise<{ port: number; close(): Promise<void> }> {
  const [port] = freePorts(1);
  const herd = new Herd(parseConfig({ servers: { Solo: { port } } }), {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: "clock-test-secret-0123",
  });
  await herd.start();
  return { port, close: () => herd.stop() };
}

/** Counts AT replies by the sign of their difference. */
function signs(text: string): { replies: number; negative: string[] } {
  const lines = text.split("\n").filter((l) => l !== "");
  const negative = lines.filter((l) => l.split(" ")[2]?.startsWith("-"));
  for (const l of lines) assert.ok(l.startsWith("AT "), `not an AT reply: ${l}`);
  return { replies: lines.length, negative };
}

// Like a student's client: stamp time.time() (printed with repr, as `str(time.time())` does),
// send at once, read the reply, repeat: one command in flight, so the receive follows the stamp
// by a loopback hop only (tens of microseconds), finer than the old millisecond clock.
const PY_CLIENT = `
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.settimeout(30)  # bounded: a reply that never comes fails the run
f = s.makefile("rb")
out = []
for i in range(n):
    s.sendall(("IAMAT py%d +34.068930-118.445127 %r\\n" % (i % 64, time.time())).encode())
    out.append(f.readline())
s.close()
sys.stdout.write(b"".join(out).decode())
`;

Deno.test({
  name: `${N} IAMATs stamped by python3 time.time() just before sending: no negative difference`,
  ignore: PY === undefined && !IN_CI,
  async fn() {
    assert.ok(PY !== undefined, "python3 is required in CI");
    const t = await startSolo();
    try {
      const out = await new Deno.Command(PY, {
        args: ["-c", PY_CLIENT, String(t.port), String(N)],
        stdout: "piped",
      }).output();
      assert.ok(out.success, "python client failed");
      const { replies, negative } = signs(new TextDecoder().decode(out.stdout));
      assert.deepEqual(replies, N);
      assert.deepEqual(negative.length, 0, `negative differences, e.g. ${negative.slice(0, 3)}`);
    } finally {
      await t.close();
    }
  },
});

Deno.test(`${N} IAMATs stamped by Deno's nanosecond clock just before sending: no negative difference`, async () => {
  const t = await startSolo();
  try {
    // A bare socket, one command in flight: stamp, send, read the reply, repeat.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: t.port });
    conn.setNoDelay(true);
    const buf = new Uint8Array(4096);
    // Bounded: closing the socket makes a read that waits too long fail.
    let lastReply = performance.now();
    const watchdog = setInterval(() => {
      if (performance.now() - lastReply > 30_000) conn.close();
    }, 1000);
    let text = "";
    for (let i = 0; i < N; i++) {
      const ns = Temporal.Now.instant().epochNanoseconds;
      const time = `${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, "0")}`;
      await conn.write(new TextEncoder().encode(`IAMAT deno${i % 64} ${UCLA} ${time}\n`));
      let reply = "";
      while (!reply.endsWith("\n")) {
        const n = await conn.read(buf);
        assert.ok(n !== null, "server closed the connection");
        reply += new TextDecoder().decode(buf.subarray(0, n));
      }
      text += reply;
      lastReply = performance.now();
    }
    clearInterval(watchdog);
    conn.close();
    const { replies, negative } = signs(text);
    assert.deepEqual(replies, N);
    assert.deepEqual(negative.length, 0, `negative differences, e.g. ${negative.slice(0, 3)}`);
  } finally {
    await t.close();
  }
});

Deno.test("the server clock is the system's real-time clock, to the microsecond", () => {
  // `date +%s%N` in a subprocess reads CLOCK_REALTIME: it must fall between two readings.
  for (let i = 0; i < 3; i++) {
    const before = nowNs();
    const out = new Deno.Command("date", { args: ["+%s%N"] }).outputSync();
    const after = nowNs();
    const sys = BigInt(new TextDecoder().decode(out.stdout).trim());
    assert.ok(before <= sys && sys <= after, `date ${sys} not within [${before}, ${after}]`);
  }
  // Never behind Date.now() (which truncates to the millisecond below the true time).
  let behind = 0;
  for (let i = 0; i < 200_000; i++) {
    const ms = BigInt(Date.now());
    if (nowNs() < ms * 1_000_000n) behind++;
  }
  assert.deepEqual(behind, 0, "readings behind Date.now()");
  // Finer than Date.now(): consecutive readings (about a microsecond apart) differ by less
  // than a millisecond. The smallest step seen is robust to being descheduled now and then.
  let smallest = 1_000_000_000n;
  let prev = nowNs();
  for (let i = 0; i < 10_000; i++) {
    const now = nowNs();
    if (now > prev && now - prev < smallest) smallest = now - prev;
    prev = now;
  }
  assert.ok(smallest < 100_000n, `smallest step between readings: ${smallest} ns`);
});
