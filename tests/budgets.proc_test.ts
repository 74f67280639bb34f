/**
 * Descriptors are a budget, against real processes on loopback:
 *
 * - a `server` and a `start` process under `ulimit -n 256` get 300 connections (to a server, and
 *   to the dashboard), which close; then a normal IAMAT is answered, and the dashboard answers,
 *   within 2 s (before: accept errors ended the accept loop for good, silently, and the
 *   dashboard's rejected `finished` ended the `start` process);
 * - a server whose client slots are all taken still takes a restarted neighbour's link (before:
 *   refused as a client, logged as a secret mismatch), and records flow over it.
 */

import assert from "node:assert/strict";
import { iamat, ProcessHerd, ServerProcess, stablePorts, underUlimit } from "./_helpers/procs.ts";
import { exchange, TcpClient, waitFor } from "./_helpers/net.ts";
import { rawRequest } from "./_helpers/http_raw.ts";
import { taskFlags } from "./_helpers/task_flags.ts";
import { seedConfigJson } from "../servers/config.ts";

const OPEN_FILES = 256;
const FLOOD = 300;
/** RSS growth allowed under 400 non-reading pipeliners (docs/reliability.md). */
const RSS_GROWTH_BOUND = 256 * 1024 * 1024;

/** CPU time (user + system, all threads) process `pid` has used, in ms (/proc: 10 ms ticks). */
async function cpuMs(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // from field 3, the state
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** Opens `n` connections to a port (those the kernel completes; not necessarily accepted). */
async function flood(port: number, n: number): Promise<TcpClient[]> {
  const conns: TcpClient[] = [];
  for (let i = 0; i < n; i++) {
    try {
      conns.push(await TcpClient.connect(port));
    } catch {
      break; // the backlog is full: enough
    }
  }
  return conns;
}

/** Retries `attempt` (each bounded by the time left) until it resolves true or `ms` pass. */
async function within(ms: number, attempt: (left: number) => Promise<boolean>): Promise<number> {
  const start = performance.now();
  for (;;) {
    const left = ms - (performance.now() - start);
    if (left <= 0) throw new Error(`not served again within ${ms} ms`);
    if (await attempt(left).catch(() => false)) return performance.now() - start;
    await new Promise((r) => setTimeout(r, 20));
  }
}

function closeAll(conns: Deno.Conn[]): void {
  for (const c of conns) {
    try {
      c.close();
    } catch {
      // already closed
    }
  }
}

/** Gives the server time to take (or refuse) every connection: until some are refused, or 3 s. */
async function settle(conns: TcpClient[]): Promise<void> {
  await waitFor(() => conns.some((c) => c.eof), 3000, "refusals").catch(() => {});
  await new Promise((r) => setTimeout(r, 300));
}

async function iamatAnswered(port: number, client: string, left: number): Promise<boolean> {
  const reply = await exchange(port, `IAMAT ${client} +34.068930-118.445127 1621464827.5\n`, left);
  return reply.startsWith("AT ") && reply.includes(` ${client} `);
}

async function dashboardAnswers(port: number, left: number): Promise<boolean> {
  const res = await fetch(`http://127.0.0.1:${port}/api/state`, {
    signal: AbortSignal.timeout(Math.max(1, left)),
  });
  const body = await res.json();
  return res.status === 200 && Array.isArray(body.servers);
}

Deno.test("descriptors: a server under ulimit -n 256 refuses 300 connections clearly and serves again within 2 s", async () => {
  const herd = await ProcessHerd.create({
    topology: { Hill: [] },
    wrap: () => underUlimit(OPEN_FILES),
  });
  let conns: TcpClient[] = [];
  try {
    const hill = await herd.start("Hill");
    const port = herd.port("Hill");
    conns = await flood(port, FLOOD);
    assert.deepEqual(conns.length, FLOOD);
    // Those beyond the budget are told so (a silent one after its 1 s handshake window).
    await settle(conns);
    const refused = conns.filter((c) => c.eof);
    await Promise.all(conns.map((c) => c.close()));
    const ms = await within(2000, (left) => iamatAnswered(port, "after.flood", left));
    console.log(`refused ${refused.length} of ${FLOOD}; served again after ${ms.toFixed(0)} ms`);
    assert.ok(refused.length > 0, "connections beyond the budget are refused");
    for (const c of refused) {
      assert.deepEqual(c.received, "? server busy: too many open connections\n");
    }
    assert.ok(!hill.exited, "the server is still running");
  } finally {
    await Promise.all(conns.map((c) => c.close()));
    await herd.close();
  }
});

/** A `main.ts start` process under a descriptor limit, with the dashboard. */
async function startProcess(dir: string, limit: number): Promise<{
  proc: ServerProcess;
  ports: number[];
  dashboardPort: number;
}> {
  const ports = stablePorts(6);
  await Deno.writeTextFile(`${dir}/herd.json`, JSON.stringify(seedConfigJson(ports)));
  const args = [
    "run",
    ...taskFlags("start"),
    "main.ts",
    "start",
    "--config",
    `${dir}/herd.json`,
    "--log-dir",
    `${dir}/logs`,
    "--memory",
    "--dashboard-port",
    String(ports[5]),
    "--places",
    "legacy",
    "--places-url",
    "http://127.0.0.1:1",
  ];
  const [cmd, ...prefix] = [...underUlimit(limit), Deno.execPath()];
  const child = new Deno.Command(cmd, {
    args: [...prefix, ...args],
    cwd: new URL("..", import.meta.url).pathname,
    env: { HERD_SECRET: "budgets-test-secret-0123456789", GOOGLE_PLACES_API_KEY: "k" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // ServerProcess waits for "<name> listening on"; `start` prints the dashboard after the servers.
  const proc = new ServerProcess("Singleton", child);
  await proc.waitListening();
  await waitFor(() => proc.stdout.includes("Dashboard:"), 30_000, "the dashboard line");
  return { proc, ports: ports.slice(0, 5), dashboardPort: ports[5] };
}

Deno.test("descriptors: a start process under ulimit -n 256 survives 300 connections to a server and to the dashboard", async () => {
  const dir = await Deno.makeTempDir({ prefix: "herd-budgets-" });
  let conns: TcpClient[] = [];
  let proc: ServerProcess | undefined;
  try {
    const started = await startProcess(dir, OPEN_FILES);
    proc = started.proc;
    const [hill] = started.ports;
    const dash = started.dashboardPort;

    // 300 to a server: served again within 2 s, and the dashboard answers.
    conns = await flood(hill, FLOOD);
    await settle(conns);
    await Promise.all(conns.map((c) => c.close()));
    let ms = await within(2000, (left) => iamatAnswered(hill, "after.server.flood", left));
    console.log(`server flood: served again after ${ms.toFixed(0)} ms`);
    await within(2000, (left) => dashboardAnswers(dash, left));

    // 300 to the dashboard: the process lives, the dashboard and the servers answer again.
    conns = await flood(dash, FLOOD);
    await settle(conns);
    const refused = conns.find((c) => c.eof && c.received !== "");
    // While they are held, the dashboard's share of the budget is full, not the clients':
    // the herd's client ports still serve.
    const held = await Promise.all(
      Array.from({ length: 20 }, () => TcpClient.connect(hill)),
    );
    try {
      for (const [i, c] of held.entries()) {
        await c.send(`IAMAT during.dashboard.flood.${i} +34.068930-118.445127 1621464827.5\n`);
      }
      for (const [i, c] of held.entries()) {
        await c.waitUntil((text) => text.includes("\n"), 5000);
        assert.match(c.received, /^AT Hill /, `herd client ${i} during the dashboard flood`);
      }
    } finally {
      await Promise.all(held.map((c) => c.close()));
    }
    await Promise.all(conns.map((c) => c.close()));
    ms = await within(2000, (left) => dashboardAnswers(dash, left));
    console.log(`dashboard flood: answered again after ${ms.toFixed(0)} ms`);
    await within(2000, (left) => iamatAnswered(hill, "after.dashboard.flood", left));
    assert.ok(!proc.exited, `the start process exited: ${proc.stderr}`);
    assert.ok(refused !== undefined, "dashboard connections beyond the budget are refused");
    assert.match(refused.received, /^HTTP\/1\.1 503 [^]*"error":"server busy/);
  } finally {
    await Promise.all(conns.map((c) => c.close()));
    await proc?.kill();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("descriptors: a server with every client slot taken still takes a restarted neighbour's link", async () => {
  const MAX = 20;
  // Hill dials (its name sorts first), Jaquez accepts: fill Jaquez, restart Hill.
  const herd = await ProcessHerd.create({
    topology: { Hill: ["Jaquez"], Jaquez: ["Hill"] },
    args: (name) => (name === "Jaquez" ? ["--max-connections", String(MAX)] : []),
  });
  let idle: TcpClient[] = [];
  try {
    await herd.startAll();
    await herd.waitLinksUp();
    await herd.kill("Hill");
    idle = await flood(herd.port("Jaquez"), MAX);
    // Every slot is taken: one more client is refused.
    const extra = await exchange(herd.port("Jaquez"), "IAMAT extra +1+1 1\n");
    assert.deepEqual(extra, "? server busy: too many connections\n");
    // Past the cap, a `HERD` prefix gets a connection in for a handshake only: a line that is
    // not a handshake, or a handshake that is refused, closes it unanswered as a client.
    for (
      const attempt of [
        "HERD2 \nIAMAT bypass +1+1 1\n",
        "HERDX\nIAMAT bypass +1+1 1\n",
        "HERD2 HELLO peer Nobody Jaquez 00\nIAMAT bypass +1+1 1\n",
      ]
    ) {
      const reply = await exchange(herd.port("Jaquez"), attempt);
      assert.ok(
        !reply.includes("AT "),
        `${JSON.stringify(attempt)} was served: ${JSON.stringify(reply)}`,
      );
    }
    assert.ok(
      !(await herd.log("Jaquez")).includes("bypass"),
      "a bypass IAMAT reached Jaquez's store",
    );
    await herd.start("Hill");
    await herd.waitLinksUp(10_000);
    assert.ok(!(await herd.log("Hill")).includes("neighbour refused our handshake"));
    // Records flow both ways over the link.
    await iamat(herd.port("Hill"), "from.hill", "+1+1", "1621464827.5");
    await waitFor(
      async () => (await herd.log("Jaquez")).includes("from.hill"),
      5000,
      "Hill's record at Jaquez",
    );
    await Promise.all(idle.map((c) => c.close()));
    idle = [];
    const reply = await exchange(herd.port("Jaquez"), "WHATSAT from.hill 10 0\n");
    assert.match(reply, /^AT Hill \S+ from\.hill /);
  } finally {
    await Promise.all(idle.map((c) => c.close()));
    await herd.close();
  }
});

Deno.test("memory: 400 pipeliners that never read: a normal client is answered within 1 s and RSS stays bounded", async () => {
  const PIPELINERS = 400;
  const COMMANDS = 5000;
  const herd = await ProcessHerd.create({
    topology: { Hill: [] },
    places: "offline",
    args: () => ["--max-connections", "1000"],
  });
  const hogs: Deno.TcpConn[] = [];
  let normal: TcpClient | undefined;
  try {
    const hill = await herd.start("Hill");
    const port = herd.port("Hill");
    // Los Angeles: 20 results within 50 km, so each pipelined reply is several KiB.
    await iamat(port, "memory.hog", "+34.068930-118.445127", "1621464827.5");
    await iamat(port, "memory.normal", "+34.068930-118.445127", "1621464827.5");
    normal = await TcpClient.connect(port);
    // A round trip's wall time, and the CPU time Hill had meanwhile: at load 25 Hill may be off
    // the CPU for over a second, which is not its unfairness (a server that serves the hogs
    // first burns a second of CPU before it answers).
    const timed = async () => {
      const before = normal!.received.length;
      const [t0, cpu0] = [performance.now(), await cpuMs(hill.pid)];
      await normal!.send(`WHATSAT memory.normal 10 1\n`);
      await normal!.waitUntil((text) => text.length > before && text.endsWith("}\n\n"), 10_000);
      return { wall: performance.now() - t0, cpu: (await cpuMs(hill.pid)) - cpu0 };
    };
    const roundTrip = async () => (await timed()).wall;
    await roundTrip();
    const rss0 = (await hill.rss())!;

    const payload = new TextEncoder().encode("WHATSAT memory.hog 50 20\n".repeat(COMMANDS));
    for (let i = 0; i < PIPELINERS; i++) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      hogs.push(c);
      // Written in the background: the server stops reading, so this write never finishes.
      c.write(payload).catch(() => {});
    }
    // The first round trip meets the burst of 400 connections' first reads (and the garbage
    // collections that follow): bounded, but not held to the 1 s of the steady state.
    const burst = await roundTrip();
    assert.ok(burst < 10_000, `the round trip during the connection burst took ${burst} ms`);
    let rssMax = rss0;
    const latencies: number[] = [];
    let slowest = { wall: 0, cpu: 0 };
    // Four seconds: the hogs keep the server's core busy, and other tests share the machine.
    const until = performance.now() + 4000;
    while (performance.now() < until) {
      const r = await timed();
      latencies.push(r.wall);
      if (Math.min(r.wall, r.cpu) > Math.min(slowest.wall, slowest.cpu)) slowest = r;
      rssMax = Math.max(rssMax, (await hill.rss()) ?? 0);
      await new Promise((r) => setTimeout(r, 200));
    }
    const MiB = 1024 * 1024;
    console.log(
      `RSS ${(rss0 / MiB).toFixed(0)} -> max ${(rssMax / MiB).toFixed(0)} MiB; normal client: ${
        burst.toFixed(0)
      } ms in the burst, then ${
        latencies.map((l) => l.toFixed(0)).join(" ")
      } ms (slowest: ${slowest.cpu} ms of Hill's CPU)`,
    );
    // Within 1 s, or within 1 s of Hill's CPU time when the box kept Hill off the CPU.
    assert.ok(
      Math.min(slowest.wall, slowest.cpu) < 1000,
      `a normal round trip took ${slowest.wall.toFixed(0)} ms, ${slowest.cpu} ms of Hill's CPU`,
    );
    assert.ok(
      rssMax - rss0 < RSS_GROWTH_BOUND,
      `RSS grew by ${((rssMax - rss0) / MiB).toFixed(0)} MiB`,
    );
  } finally {
    closeAll(hogs);
    await normal?.close();
    await herd.close();
  }
});

Deno.test("memory: over the reply budget, the pipeliners holding the most are cut; a reader is not", async () => {
  const HOGS = 20;
  const herd = await ProcessHerd.create({
    topology: { Hill: [] },
    args: () => ["--reply-budget-mib", "4"],
  });
  const hogs: Deno.TcpConn[] = [];
  let normal: TcpClient | undefined;
  try {
    await herd.start("Hill");
    const port = herd.port("Hill");
    await iamat(port, "memory.hog", "+34.068930-118.445127", "1621464827.5");
    normal = await TcpClient.connect(port);
    // 60 KB invalid lines: each is answered with itself, so the kernel's socket buffers fill
    // at once (searches would take minutes of CPU to fill them).
    const payload = new TextEncoder().encode(`${"x".repeat(60_000)}\n`.repeat(20));
    let cut = 0;
    for (let i = 0; i < HOGS; i++) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      hogs.push(c);
      // Never read, keep writing: the server's writes stall, its buffers fill, it stops reading
      // us, and then it gives up on us (our write fails: reset).
      (async () => {
        for (;;) await c.write(payload);
      })().catch(() => cut++);
    }
    // Over budget, the stalled ones holding the most are cut until the rest fit.
    await waitFor(() => cut > 0, 30_000, "stalled pipeliners cut");
    // The reader was never paused nor cut.
    await normal.send("WHATSAT memory.hog 10 0\n");
    await normal.waitUntil((text) => text.endsWith("}\n\n"), 5000);
    await waitFor(
      async () => (await herd.log("Hill")).includes("output budget exceeded"),
      3000,
      "the cuts logged",
    );
  } finally {
    closeAll(hogs);
    await normal?.close();
    await herd.close();
  }
});

// Third adversarial review (tmp_adv3/sselock.py): ordinary event-stream readers, which read
// everything and so are never quiet, held every place of the dashboard's connection share, and
// /healthz, /metrics and the page answered 503 for as long as they stayed (an orchestrator's
// health probe would restart a healthy herd).
Deno.test("descriptors: event streams have their own cap; health, metrics and pages always find room on the dashboard port", async () => {
  const dir = await Deno.makeTempDir({ prefix: "herd-budgets-" });
  const streams: TcpClient[] = [];
  let proc: ServerProcess | undefined;
  try {
    // ulimit 256: a client share of 192 descriptors, 16 dashboard connections.
    const started = await startProcess(dir, OPEN_FILES);
    proc = started.proc;
    const dash = started.dashboardPort;
    const [hill] = started.ports;
    // Events flow throughout (the streams carry them), as on a live herd.
    let n = 0;
    const traffic = setInterval(() => {
      void exchange(hill, `IAMAT sse.lock.${n++} +34.068930-118.445127 1621464827.5\n`, 2000)
        .catch(() => {});
    }, 200);
    try {
      for (let i = 0; i < 24; i++) {
        const c = await TcpClient.connect(dash);
        streams.push(c);
        await c.send(`GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:${dash}\r\n\r\n`);
        await c.waitUntil((text) => text.includes("\r\n"), 5000).catch(() => {});
      }
      const statuses = streams.map((c) => /^HTTP\/1\.1 (\d{3})/.exec(c.received)?.[1] ?? "none");
      const open = statuses.filter((s) => s === "200").length;
      assert.ok(open >= 1, `some streams are served (statuses: ${statuses.join(" ")})`);
      const refused = streams.find((c) => c.received.startsWith("HTTP/1.1 503"));
      assert.ok(refused, `streams beyond the cap are refused (statuses: ${statuses.join(" ")})`);
      await refused.waitUntil((text) => text.includes("}"), 5000);
      assert.match(refused.received, /"error":"too many event streams/);
      // With every stream held and reading: the ops routes and the page answer, again and again.
      // (A refused stream's connection stays open, quiet, and makes way after 2.5 s: hence "within".)
      for (let round = 0; round < 3; round++) {
        for (const path of ["/healthz", "/metrics", "/"]) {
          let last = "";
          await within(5_000, async (left) => {
            const res = await rawRequest(dash, path, { ms: left });
            last = `${res.status} ${res.body.slice(0, 200)}`;
            return res.status === 200;
          }).catch(() => {
            throw new assert.AssertionError({
              message: `${path} (round ${round}) with ${open} streams open: ${last}`,
            });
          });
        }
      }
      assert.ok(streams.some((c) => !c.eof), "the admitted streams are still open");
      // Every refusal for the stream cap is counted where an operator looks (other 503s are the
      // port's connection share: "server busy").
      const answered503 = streams.filter((c) => c.received.startsWith("HTTP/1.1 503"));
      await Promise.all(answered503.map((c) => c.waitUntil((text) => text.includes("}"), 5000)));
      const byCap = answered503.filter((c) => c.received.includes("too many event streams"));
      const metrics = await rawRequest(dash, "/metrics", { ms: 5_000 });
      const counted = /^herd_dashboard_streams_refused_total (\d+)$/m.exec(metrics.body)?.[1];
      assert.equal(Number(counted), byCap.length, `refused by the cap: ${counted}`);
    } finally {
      clearInterval(traffic);
    }
    assert.ok(!proc.exited, `the start process exited: ${proc.stderr}`);
  } finally {
    await Promise.all(streams.map((c) => c.close()));
    await proc?.kill();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
