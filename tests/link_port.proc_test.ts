/**
 * The plain link port (servers/link_port.ts): links and observers run on a port of their own, so
 * that no process but a server itself holds a socket on that server's client port.
 *
 * The CS 131 TA sample grading script (CS131-TA-team/CS131-Project-Sample-Grading-Script,
 * client_basic.py, end_server) stops one server with `lsof -ti:PORT | xargs kill`: every process
 * holding a TCP socket whose local OR remote port is PORT is killed. Links held open to a
 * neighbour's client port made that kill stop the neighbours too (Smith's took Hill, Campbell and
 * Singleton with it). Also: an older server (it answers the link-port question with `? ...`) is
 * still linked over its client port, an older dialler's HELLO on the client port still links,
 * the link port answers nothing but handshakes, and a `"linkPort"` in the config is used.
 */

import assert from "node:assert/strict";
import { iamat, ProcessHerd, PROCS_SECRET, whatsat } from "./_helpers/procs.ts";
import { allWatching, portHolders, readLine, TcpClient, waitFor } from "./_helpers/net.ts";
import { leasePorts } from "./_helpers/ports.ts";
import { RemoteHerd } from "../dashboard/remote_herd.ts";
import { parseConfig } from "../servers/config.ts";
import { HerdAuth } from "../servers/auth.ts";
import { acceptHandshake, dialHandshake } from "../servers/handshake.ts";
import { LineSplitter } from "../servers/lines.ts";
import { formatWelcome, parseHello } from "../servers/wire.ts";
import { closeQuietly, writeAll } from "../servers/io.ts";

/** Who holds each server's client port, by server name (a process not in the herd by pid). */
function holders(herd: ProcessHerd): Record<string, string[]> {
  const byPid = new Map(
    herd.names.filter((n) => herd.running(n)).map((n) => [herd.procs.get(n)!.pid, n]),
  );
  const out: Record<string, string[]> = {};
  for (const name of herd.names.filter((n) => herd.running(n))) {
    out[name] = [...portHolders(herd.port(name))].map((p) => byPid.get(p) ?? `pid ${p}`).sort();
  }
  return out;
}

/** Waits until each running server alone holds its client port (closing sockets linger briefly). */
async function waitOwnPortsOnly(herd: ProcessHerd): Promise<void> {
  const own = () => Object.entries(holders(herd)).every(([n, h]) => h.length === 1 && h[0] === n);
  await waitFor(own, 5000, "each client port held by its server alone").catch((err) => {
    throw new Error(`${(err as Error).message}: ${JSON.stringify(holders(herd))}`);
  });
}

/** Waits until the server on `port` knows `client` (flooded to it). */
async function waitKnownAt(port: number, client: string, what: string): Promise<void> {
  await waitFor(async () => (await whatsat(port, client)) !== undefined, 10_000, what);
}

Deno.test("grader: `lsof -ti:PORT | xargs kill` of one server stops that server only; the herd floods and relinks after its restart", async () => {
  await using herd = await ProcessHerd.create();
  await herd.startAll();
  await herd.waitLinksUp();
  // A remote dashboard watches every server: it must not hold their client ports either.
  const config = parseConfig({
    servers: Object.fromEntries(herd.names.map((n) => [n, {
      port: herd.port(n),
      host: "127.0.0.1",
      neighbors: herd.topology[n],
    }])),
  });
  const remote = new RemoteHerd(config, { secret: PROCS_SECRET, observer: "grader-dash" });
  remote.start();
  try {
    await waitFor(
      () => allWatching(remote),
      10_000,
      "the remote dashboard watching every server",
    );
    await waitOwnPortsOnly(herd);

    // The script's own action: SIGTERM to every holder of Smith's port; the other four serve.
    for (const pid of portHolders(herd.port("Smith"))) {
      if (pid !== Deno.pid) Deno.kill(pid, "SIGTERM");
    }
    await waitFor(() => !herd.running("Smith"), 10_000, "Smith stopped");
    await new Promise((r) => setTimeout(r, 500));
    for (const name of herd.names.filter((n) => n !== "Smith")) {
      assert.ok(herd.running(name), `${name} was stopped with Smith`);
    }
    // Flooding goes around Smith: Hill → Jaquez → Singleton → Campbell.
    const t = String(Math.floor(Date.now() / 1000));
    assert.match(await iamat(herd.port("Hill"), "grader.a", "+1+1", t), /^AT Hill /);
    await waitKnownAt(herd.port("Campbell"), "grader.a", "grader.a at Campbell");

    // Smith comes back, relinks, and is caught up and flooded to.
    await herd.start("Smith");
    await herd.waitLinksUp();
    assert.match(await iamat(herd.port("Campbell"), "grader.b", "+2+2", t), /^AT Campbell /);
    for (const client of ["grader.a", "grader.b"]) {
      await waitKnownAt(herd.port("Smith"), client, `${client} at the restarted Smith`);
    }
    await waitFor(
      () => allWatching(remote),
      10_000,
      "the remote dashboard watching the restarted Smith",
    );
    await waitOwnPortsOnly(herd);
  } finally {
    await remote.stop();
  }
});

Deno.test("link port: an older server (it answers the question with `?`) is linked through its client port", async () => {
  await using herd = await ProcessHerd.create({ topology: { Hill: ["Jaquez"], Jaquez: ["Hill"] } });
  // Jaquez is an older server, played here: it answers the link-port question as every older
  // server answers an unknown HERD2 line (a client's `? <line>`, connection kept), and takes
  // today's handshake on its client port.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: herd.port("Jaquez") });
  const auth = new HerdAuth(PROCS_SECRET);
  const seen: string[] = [];
  const linked = (async () => {
    for await (const conn of listener) {
      const first = await readLine(conn);
      seen.push(first ?? "EOF");
      const hello = first === undefined ? undefined : parseHello(first);
      if (hello === undefined) {
        if (first !== undefined) await writeAll(conn, new TextEncoder().encode(`? ${first}\n`));
        // The dialler closes the question's connection once answered (an older server never does).
        const after = await readLine(conn);
        seen.push(after === undefined ? "closed by the dialler" : `then ${after}`);
        closeQuietly(conn);
        continue;
      }
      const r = await acceptHandshake(auth, conn, new LineSplitter(), hello, []);
      if (!r.ok) {
        closeQuietly(conn);
        continue;
      }
      await writeAll(conn, new TextEncoder().encode(formatWelcome("peer", "Jaquez", "Hill")));
      return conn;
    }
  })();
  try {
    await herd.start("Hill");
    const conn = await Promise.race([
      linked,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 15_000)),
    ]);
    assert.ok(conn, `Hill never linked through the client port: ${JSON.stringify(seen)}`);
    assert.deepEqual(seen.slice(0, 3), [
      "HERD2 LINKPORT Jaquez",
      "closed by the dialler",
      seen[2],
    ]);
    assert.match(seen[2], /^HERD2 HELLO peer Hill Jaquez /);
    await waitFor(async () => (await herd.links("Hill")).get("Jaquez") === true, 5000, "LINK UP");
    closeQuietly(conn);
  } finally {
    closeQuietly(listener);
    await linked.catch(() => {});
  }
});

Deno.test("link port: an older dialler's HELLO on the client port still links", async () => {
  // Aaron sorts before Hill, so Hill takes its dial whatever Hill's own dials are doing.
  await using herd = await ProcessHerd.create({ topology: { Aaron: ["Hill"], Hill: ["Aaron"] } });
  await herd.start("Hill");
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: herd.port("Hill") });
  try {
    const r = await dialHandshake(
      new HerdAuth(PROCS_SECRET),
      conn,
      new LineSplitter(),
      "peer",
      "Aaron",
      "Hill",
    );
    assert.ok(r.ok, JSON.stringify(r));
    await waitFor(async () => (await herd.links("Hill")).get("Aaron") === true, 5000, "LINK UP");
  } finally {
    closeQuietly(conn);
  }
});

Deno.test("link port: answered on the client port, configurable, and it serves handshakes only", async () => {
  const [linkPort] = leasePorts(1);
  await using herd = await ProcessHerd.create({ topology: { Hill: ["Jaquez"], Jaquez: ["Hill"] } });
  const path = `${herd.dir}/linkport.json`;
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      servers: {
        Hill: { port: herd.port("Hill"), host: "127.0.0.1", linkPort, neighbors: ["Jaquez"] },
        Jaquez: { port: herd.port("Jaquez"), host: "127.0.0.1" },
      },
    }),
  );
  await herd.startAll(herd.names, [], path);
  await herd.waitLinksUp();
  await waitOwnPortsOnly(herd);

  const ask = async (port: number, line: string) => {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await writeAll(c, new TextEncoder().encode(line));
      return await readLine(c);
    } finally {
      closeQuietly(c);
    }
  };
  // Hill's configured port; Jaquez's own, assigned by the system, not its client port.
  assert.equal(
    await ask(herd.port("Hill"), "HERD2 LINKPORT Hill\n"),
    `HERD2 LINKPORT Hill ${linkPort}`,
  );
  const answer = await ask(herd.port("Jaquez"), "HERD2 LINKPORT Jaquez\n");
  const m = /^HERD2 LINKPORT Jaquez (\d+)$/.exec(answer ?? "");
  assert.ok(m, answer);
  const jaquezLinks = Number(m[1]);
  assert.notEqual(jaquezLinks, herd.port("Jaquez"));
  // The link itself runs on those ports: an established socket on Hill's link port.
  assert.ok(portHolders(linkPort).has(herd.procs.get("Hill")!.pid));
  // A question for another server is a client's bad line.
  assert.equal(await ask(herd.port("Hill"), "HERD2 LINKPORT Jaquez\n"), "? HERD2 LINKPORT Jaquez");

  // The link port takes no client command: the connection closes without a reply.
  for (const port of [linkPort, jaquezLinks]) {
    const c = await TcpClient.connect(port);
    try {
      await c.send("IAMAT linkport.client +1+1 1700000000\n");
      assert.equal(await c.waitEof(5000), "");
    } finally {
      await c.close();
    }
  }
  const t = String(Math.floor(Date.now() / 1000));
  assert.match(await iamat(herd.port("Hill"), "linkport.c", "+1+1", t), /^AT Hill /);
  await waitKnownAt(herd.port("Jaquez"), "linkport.c", "linkport.c at Jaquez");
});
