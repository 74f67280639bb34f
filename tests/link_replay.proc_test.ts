/**
 * A handshake captured on the path is useless later: a recording proxy sits on
 * loopback between a dialler and the link port of the server it dials; replaying the dialler's recorded bytes
 * is refused while the real link is up, and again after the receiving server restarts with a
 * fresh memory (a new Herd: nothing of the first run is left); the replayer never gets a record
 * nor the event stream. Same for an observer (a remote dashboard). Peers whose clocks are 10
 * minutes apart still link (separate processes, a test clock offset).
 */

import assert from "node:assert/strict";
import { type HerdConfig, parseConfig } from "../servers/config.ts";
import type { HerdEvent } from "../servers/events.ts";
import { Herd } from "../servers/herd.ts";
import { openLogs } from "../servers/log.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";
import { RemoteHerd } from "../dashboard/remote_herd.ts";
import { exchange, freePorts, linkPortFront, TcpClient, waitFor } from "./_helpers/net.ts";
import { RecordingProxy } from "./_helpers/proxy.ts";
import { iamat, ProcessHerd, whatsat } from "./_helpers/procs.ts";

const SECRET = "link-replay-test-secret-0123456789";
/** A link's first answer or a record line: what a replayer must never get. */
const LEAK = /(^|\n)(HERD\d WELCOME|SYNC |R )|replay\.secret/;

/** One in-process server of `config` with a log file in `dir`, watched for link events. */
async function startOne(config: HerdConfig, name: string, dir: string) {
  const herd = new Herd(config, {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: SECRET,
    only: [name],
    whatsatGraceMs: 0,
  });
  const logs = await openLogs(herd.bus, dir, [name]);
  const events: HerdEvent[] = [];
  herd.bus.subscribe((e) => {
    if (e.kind === "link.up" || e.kind === "link.down") events.push(e);
  });
  await herd.start();
  return {
    herd,
    events,
    link: (peer: string) => herd.servers.get(name)!.links.find((l) => l.peer === peer)!,
    async log() {
      await logs.flush();
      return await Deno.readTextFile(`${dir}/${name}.log`);
    },
    async stop() {
      await herd.stop();
      await logs.close();
    },
  };
}

/** Sends recorded bytes to `port` as they were, and returns everything the server answered. */
async function replay(port: number, bytes: string): Promise<string> {
  const c = await TcpClient.connect(port);
  await c.send(bytes);
  // The server closes on the bad proof; a server that took the replay keeps the link open.
  await c.waitEof(4000).catch(() => {});
  await c.close();
  return c.received;
}

/** How often `re` matches the text. */
function count(text: string, re: RegExp): number {
  return (text.match(new RegExp(re.source, "g")) ?? []).length;
}

Deno.test("link replay: a recorded peer handshake is refused before and after the receiver restarts; no record leaks", async () => {
  const dir = await Deno.makeTempDir({ prefix: "link-replay-" });
  const [a, b, bLinks, front, nowhere] = freePorts(5);
  const proxy = RecordingProxy.start(bLinks);
  // A reaches B's link port only through the proxy (the client port A asks names the proxy);
  // B's dials to A go nowhere (so the proxy records A's).
  const asked = linkPortFront(front, "B", proxy.port);
  const configA = parseConfig({
    servers: { A: { port: a, neighbors: ["B"] }, B: { port: front } },
  });
  const configB = parseConfig({
    servers: { A: { port: nowhere, neighbors: ["B"] }, B: { port: b, linkPort: bLinks } },
  });
  let serverB = await startOne(configB, "B", dir);
  const serverA = await startOne(configA, "A", dir);
  try {
    await waitFor(() => serverA.link("B").up && serverB.link("A").up, 5000, "link A-B up");
    await exchange(b, "IAMAT replay.secret +1+2 1700000000\n");
    await waitFor(
      async () => (await exchange(a, "WHATSAT replay.secret 10 0\n")).startsWith("AT B "),
      3000,
      "the record to cross the real link",
    );
    const recorded = proxy.sessions[0].fromClient;
    assert.match(recorded, /^HERD2 HELLO peer A B [0-9a-f]{32}\nHERD2 PROOF [0-9a-f]{64}\n/);

    // 1. While the real link is up.
    const downsBefore = serverB.events.filter((e) => e.kind === "link.down").length;
    let got = await replay(bLinks, recorded);
    assert.doesNotMatch(got, LEAK, "the replayer got nothing");
    assert.match(got, /^HERD2 CHALLENGE B A [0-9a-f]{32} [0-9a-f]{64}\n$/);
    assert.equal(count(await serverB.log(), /PEER REJECTED \S+ \(bad proof from A\)/), 1);
    assert.equal(serverB.link("A").up, true, "the real link stays");
    assert.equal(serverB.events.filter((e) => e.kind === "link.down").length, downsBefore);

    // 2. After B restarts with a fresh memory, while A is away (nothing else claims the link).
    await serverA.stop();
    await serverB.stop();
    serverB = await startOne(configB, "B", dir);
    await exchange(b, "IAMAT replay.secret2 +3+4 1700000001\n");
    got = await replay(bLinks, recorded);
    assert.doesNotMatch(got, LEAK, "the replayer got nothing");
    assert.equal(count(await serverB.log(), /PEER REJECTED \S+ \(bad proof from A\)/), 2);
    assert.equal(serverB.link("A").up, false);
    assert.equal(serverB.events.filter((e) => e.kind === "link.up").length, 0);
  } finally {
    await serverA.stop();
    await serverB.stop();
    asked.close();
    await proxy.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("link replay: a recorded observer handshake is refused before and after the server restarts", async () => {
  const dir = await Deno.makeTempDir({ prefix: "link-replay-" });
  const [s, sLinks, front] = freePorts(3);
  const proxy = RecordingProxy.start(sLinks);
  const asked = linkPortFront(front, "S", proxy.port);
  const config = parseConfig({ servers: { S: { port: s, linkPort: sLinks } } });
  let server = await startOne(config, "S", dir);
  const remote = new RemoteHerd(parseConfig({ servers: { S: { port: front } } }), {
    secret: SECRET,
    observer: "dash",
  });
  try {
    remote.start();
    await waitFor(
      () => proxy.sessions.some((r) => r.fromServer.includes("\nSTATE ")),
      5000,
      "the dashboard to watch S",
    );
    await remote.stop();
    const recorded = proxy.sessions[0].fromClient;
    assert.match(recorded, /^HERD2 HELLO observer dash S [0-9a-f]{32}\nHERD2 PROOF [0-9a-f]{64}\n/);
    for (const when of ["before", "after"]) {
      if (when === "after") {
        await server.stop();
        server = await startOne(config, "S", dir);
      }
      const got = await replay(sLinks, recorded);
      assert.doesNotMatch(
        got,
        /(^|\n)(HERD\d WATCHING|STATE |EVENT )/,
        `${when} the restart: no stream`,
      );
      assert.match(
        await server.log(),
        /PEER REJECTED \S+ \(bad proof from observer dash\)/,
        `${when} the restart`,
      );
    }
  } finally {
    await remote.stop();
    await server.stop();
    asked.close();
    await proxy.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("link replay: servers whose clocks are 10 minutes apart still link and flood", async () => {
  await using herd = await ProcessHerd.create({
    topology: { Ahead: ["Behind"], Behind: ["Ahead"] },
    env: (name) => ({ HERD_CLOCK_OFFSET_MS: name === "Ahead" ? "300000" : "-300000" }),
  });
  await herd.startAll();
  await herd.waitLinksUp(10_000);
  // The offset is real: a client stamping the true time is 5 minutes behind Ahead's clock ...
  const now = (Date.now() / 1000).toFixed(3);
  const at = await iamat(herd.port("Ahead"), "skew.kiwi", "+1+2", now);
  const diff = Number(at.split(" ")[2]);
  assert.ok(diff > 290 && diff < 310, `Ahead's diff ${diff}`);
  // ... and 5 minutes ahead of Behind's.
  const behind = await iamat(herd.port("Behind"), "skew.kiwi2", "+1+2", now);
  assert.ok(Number(behind.split(" ")[2]) < -290, behind);
  // The record crosses the link both ways.
  await waitFor(
    async () => (await whatsat(herd.port("Behind"), "skew.kiwi")) === at,
    3000,
    "flood",
  );
  await waitFor(
    async () => (await whatsat(herd.port("Ahead"), "skew.kiwi2")) === behind,
    3000,
    "flood back",
  );
  for (const name of herd.names) {
    assert.doesNotMatch(await herd.log(name), /PEER REJECTED/, name);
  }
});
