/**
 * A server's plain link port survives its restarts, and diallers dial the link port they know
 * (servers/link_port_memory.ts, servers/link_port.ts `LinkPortBook`): after a restart, of either
 * end, no neighbour connects to a client port at all, so `lsof -ti:PORT | xargs kill` (the CS 131
 * TA script) finds no neighbour on it whenever it runs. A remembered port is never trusted beyond
 * a first try: taken by another process, the server picks a new one and diallers ask again; a
 * stale file naming an unrelated listener links to nothing there.
 *
 * Connections are counted from /proc/net/tcp: a question's connection leaves a TIME-WAIT row
 * (its ports) for a minute after it closes, so even a question of a millisecond is seen.
 */

import assert from "node:assert/strict";
import { iamat, ProcessHerd, PROCS_SECRET, whatsat } from "./_helpers/procs.ts";
import { allWatching, linkPortFront, readLine, tcpSockets, waitFor } from "./_helpers/net.ts";
import { leasePorts } from "./_helpers/ports.ts";
import { RemoteHerd } from "../dashboard/remote_herd.ts";
import { parseConfig } from "../servers/config.ts";
import { HerdAuth } from "../servers/auth.ts";
import { acceptHandshake } from "../servers/handshake.ts";
import { LineSplitter } from "../servers/lines.ts";
import { formatWelcome, parseHello } from "../servers/wire.ts";
import { closeQuietly, writeAll } from "../servers/io.ts";

const PAIR = { Hill: ["Jaquez"], Jaquez: ["Hill"] };

/** The other ends of every TCP connection (open, closing or in TIME-WAIT) on `port`. */
function connectionsOn(port: number): Set<number> {
  const out = new Set<number>();
  for (const [key, s] of tcpSockets()) {
    if (s.state === "0A") continue; // the listener itself
    const [local, remote] = key.split(">").map(Number);
    if (local === port) out.add(remote);
    else if (remote === port) out.add(local);
  }
  return out;
}

/** Connections on `port` that were not there in `before`. */
function newConnections(port: number, before: Set<number>): number[] {
  return [...connectionsOn(port)].filter((p) => !before.has(p));
}

/** `name`'s link port, asked on its client port (a connection of the test's own). */
async function askLinkPort(port: number, name: string): Promise<number> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await writeAll(c, new TextEncoder().encode(`HERD2 LINKPORT ${name}\n`));
    const answer = await readLine(c);
    const m = /^HERD2 LINKPORT \S+ (\d+)$/.exec(answer ?? "");
    assert.ok(m, `link-port answer of ${name}: ${answer}`);
    return Number(m[1]);
  } finally {
    closeQuietly(c);
  }
}

/**
 * Listens on `port` as a process that is no herd server: it reads what comes and answers a
 * HELLO with a CHALLENGE that proves nothing (it has no secret), then closes. `firstLines` are
 * the first lines it was sent.
 */
function unrelatedListener(port: number): { firstLines: string[]; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const firstLines: string[] = [];
  (async () => {
    for await (const conn of listener) {
      (async () => {
        const line = await readLine(conn, 2000);
        firstLines.push(line ?? "EOF");
        const hello = line === undefined ? undefined : parseHello(line);
        if (hello !== undefined) {
          const fake = `HERD2 CHALLENGE ${hello.to} ${hello.from} ${"0".repeat(32)} ${
            "0".repeat(64)
          }\n`;
          await writeAll(conn, new TextEncoder().encode(fake)).catch(() => {});
          await readLine(conn, 2000);
        }
      })().finally(() => closeQuietly(conn));
    }
  })().catch(() => {});
  return { firstLines, close: () => closeQuietly(listener) };
}

Deno.test("link port memory: after a restart of either end, the link comes back on the same link port without a connection to any client port", async () => {
  await using herd = await ProcessHerd.create({ topology: PAIR });
  await herd.startAll();
  await herd.waitLinksUp();
  const hill = herd.port("Hill");
  const jaquez = herd.port("Jaquez");
  const linkPorts = {
    Hill: await askLinkPort(hill, "Hill"),
    Jaquez: await askLinkPort(jaquez, "Jaquez"),
  };

  for (const name of ["Jaquez", "Hill"] as const) {
    const before = { Hill: connectionsOn(hill), Jaquez: connectionsOn(jaquez) };
    await herd.kill(name);
    await herd.start(name);
    await herd.waitLinksUp();
    const asked = {
      Hill: newConnections(hill, before.Hill),
      Jaquez: newConnections(jaquez, before.Jaquez),
    };
    assert.deepEqual(asked, { Hill: [], Jaquez: [] }, `connections after ${name}'s restart`);
    // Records flow over the new link (the link is real, not a stale log line).
    const t = String(Math.floor(Date.now() / 1000));
    const other = name === "Hill" ? "Jaquez" : "Hill";
    assert.match(await iamat(herd.port(other), `mem.${name}`, "+1+1", t), /^AT /);
    await waitFor(
      async () => (await whatsat(herd.port(name), `mem.${name}`)) !== undefined,
      10_000,
      `mem.${name} flooded to the restarted ${name}`,
    );
    assert.equal(
      await askLinkPort(herd.port(name), name),
      linkPorts[name],
      `${name} came back on another link port`,
    );
  }
});

Deno.test("link port memory: a neighbour too slow to answer on its link port (stopped 10 s, as a start at load 20) is waited for there, never asked on its client port", async () => {
  await using herd = await ProcessHerd.create({ topology: PAIR });
  await herd.startAll();
  await herd.waitLinksUp();
  const jaquez = herd.port("Jaquez");
  const linkPort = await askLinkPort(jaquez, "Jaquez");
  const before = connectionsOn(jaquez);
  const pid = herd.procs.get("Jaquez")!.pid;
  // Stopped, Jaquez still listens: Hill's redials land in its link port's backlog and their
  // handshakes time out (3 s each), as they do while a restarted server loads on a busy box.
  Deno.kill(pid, "SIGSTOP");
  try {
    await waitFor(async () => !(await herd.links("Hill")).get("Jaquez"), 15_000, "link down");
    await new Promise((r) => setTimeout(r, 10_000));
  } finally {
    Deno.kill(pid, "SIGCONT");
  }
  await herd.waitLinksUp();
  assert.deepEqual(newConnections(jaquez, before), [], "Hill connected to Jaquez's client port");
  assert.equal(await askLinkPort(jaquez, "Jaquez"), linkPort);
});

Deno.test("link port memory: a remembered link port asked for as the ops port goes to the ops endpoint, and the link takes another", async () => {
  await using herd = await ProcessHerd.create({ topology: PAIR });
  await herd.startAll();
  await herd.waitLinksUp();
  const remembered = await askLinkPort(herd.port("Hill"), "Hill");
  await herd.kill("Hill");
  // The operator picks a port for metrics that happens to be the one Hill's link had: the flag
  // wins (Hill ran, and exited 1 as its ops port was already its own link's).
  await herd.start("Hill", ["--ops-port", String(remembered)]);
  await herd.waitLinksUp();
  const health = await fetch(`http://127.0.0.1:${remembered}/healthz`);
  assert.equal(health.status, 200, "the ops endpoint answers on the port asked for");
  await health.body?.cancel();
  const now = await askLinkPort(herd.port("Hill"), "Hill");
  assert.notEqual(now, remembered, "the link port gave way");
});

Deno.test("link port memory: a remembered port taken by another process gives way to a new one, and a dialler that knew the old one asks again", async () => {
  await using herd = await ProcessHerd.create({ topology: PAIR });
  await herd.startAll();
  await herd.waitLinksUp();
  const jaquez = herd.port("Jaquez");
  const old = await askLinkPort(jaquez, "Jaquez");
  // A remote dashboard (a dialler that only dials) learns Jaquez's link port.
  const config = parseConfig({
    servers: Object.fromEntries(herd.names.map((n) => [n, {
      port: herd.port(n),
      host: "127.0.0.1",
      neighbors: herd.topology[n],
    }])),
  });
  const remote = new RemoteHerd(config, {
    secret: PROCS_SECRET,
    observer: "mem-dash",
    minBackoffMs: 50,
    maxBackoffMs: 200,
    handshakeTimeoutMs: 2000,
  });
  remote.start();
  let squatter: { firstLines: string[]; close(): void } | undefined;
  try {
    const watching = () => allWatching(remote);
    await waitFor(watching, 10_000, "the dashboard watching both servers");

    await herd.kill("Jaquez");
    squatter = unrelatedListener(old); // another process takes the port meanwhile
    const before = connectionsOn(jaquez);
    await herd.start("Jaquez");
    const now = await askLinkPort(jaquez, "Jaquez");
    assert.notEqual(now, old, "Jaquez listened on a port another process holds");
    await herd.waitLinksUp();
    await waitFor(watching, 15_000, "the dashboard watching the restarted Jaquez");
    // The dashboard dialled the old port, was not linked there, and asked for the new one.
    assert.ok(
      squatter.firstLines.some((l) => l.startsWith("HERD2 HELLO observer mem-dash Jaquez ")),
      JSON.stringify(squatter.firstLines),
    );
    assert.ok(newConnections(jaquez, before).length >= 2, "no question after the old port failed");
    const t = String(Math.floor(Date.now() / 1000));
    assert.match(await iamat(herd.port("Hill"), "mem.taken", "+1+1", t), /^AT Hill /);
    await waitFor(
      async () => (await whatsat(jaquez, "mem.taken")) !== undefined,
      10_000,
      "mem.taken flooded to Jaquez",
    );
  } finally {
    await remote.stop();
    squatter?.close();
  }
});

Deno.test("link port memory: a stale file naming an unrelated listener links to nothing there, and a client port is never taken as a link port", async () => {
  await using herd = await ProcessHerd.create({ topology: PAIR });
  const [unrelated, jaquezLink] = leasePorts(2);
  const squatter = unrelatedListener(unrelated);
  // Jaquez is played by the test: its client port answers the question with jaquezLink, where
  // the test takes the handshake (it never dials Hill, so only Hill's own dial can link).
  const front = linkPortFront(herd.port("Jaquez"), "Jaquez", jaquezLink);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: jaquezLink });
  const auth = new HerdAuth(PROCS_SECRET);
  const linked = (async () => {
    for await (const conn of listener) {
      const first = await readLine(conn);
      const hello = first === undefined ? undefined : parseHello(first);
      const r = hello === undefined
        ? undefined
        : await acceptHandshake(auth, conn, new LineSplitter(), hello, []);
      if (r?.ok) {
        await writeAll(conn, new TextEncoder().encode(formatWelcome("peer", "Jaquez", "Hill")));
        return conn;
      }
      closeQuietly(conn);
    }
  })();
  try {
    // Hill's file: its own link port is Jaquez's client port (free while Jaquez is down, but
    // never Hill's to take), and Jaquez's link port is the unrelated listener's.
    await Deno.mkdir(herd.dataDir, { recursive: true });
    await Deno.writeTextFile(
      `${herd.dataDir}/Hill.link-ports`,
      JSON.stringify({
        config: herd.configPath,
        self: herd.port("Jaquez"),
        peers: { Jaquez: unrelated },
      }),
    );
    front.close();
    await herd.start("Hill");
    const hillLink = await askLinkPort(herd.port("Hill"), "Hill");
    assert.notEqual(hillLink, herd.port("Jaquez"), "Hill took a client port of the config");
    // Jaquez's client port is back (played by the test again).
    const front2 = linkPortFront(herd.port("Jaquez"), "Jaquez", jaquezLink);
    try {
      const conn = await Promise.race([
        linked,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000)),
      ]);
      assert.ok(conn, `Hill never linked to Jaquez: ${JSON.stringify(squatter.firstLines)}`);
      closeQuietly(conn);
    } finally {
      front2.close();
    }
    assert.ok(
      squatter.firstLines.some((l) => l.startsWith("HERD2 HELLO peer Hill Jaquez ")),
      `Hill never tried the remembered port: ${JSON.stringify(squatter.firstLines)}`,
    );
    assert.doesNotMatch(await herd.log("Hill"), /LINK UP Jaquez .*\n[^]*LINK UP Jaquez/);
    // Hill's file now names what it learnt: its own port and Jaquez's real link port.
    await waitFor(
      async () => {
        const text = await Deno.readTextFile(`${herd.dataDir}/Hill.link-ports`).catch(() => "{}");
        const json = JSON.parse(text);
        return json.self === hillLink && json.peers?.Jaquez === jaquezLink;
      },
      5000,
      "Hill's file updated",
    );
    const mode = (await Deno.stat(`${herd.dataDir}/Hill.link-ports`)).mode! & 0o777;
    assert.equal(mode, 0o600);
  } finally {
    squatter.close();
    closeQuietly(listener);
    await linked.catch(() => {});
  }
});
