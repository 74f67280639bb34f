/**
 * The WHATSAT grace at a server's start: graders start five servers at once and ask right away.
 * A server whose neighbours were not listening yet when it dialled has no link up for a moment
 * (its warm-up ends at once, every dial refused); a WHATSAT for a client that reached a
 * neighbour meanwhile waits the grace for the record, as it would with a link up, instead of
 * answering `?` at once.
 */

import assert from "node:assert/strict";
import { exchange, freePorts, TcpClient } from "./_helpers/net.ts";
import { parseConfig } from "../servers/config.ts";
import { Herd } from "../servers/herd.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";

function twoServers(whatsatGraceMs: number): Herd {
  const [a, b] = freePorts(2);
  const config = parseConfig({
    servers: { Ant: { port: a, neighbors: ["Bee"] }, Bee: { port: b, neighbors: ["Ant"] } },
  });
  return new Herd(config, {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: "test-secret-0123456789",
    whatsatGraceMs,
  });
}

Deno.test("grace at start: a WHATSAT before any link is up waits for the record a neighbour starting meanwhile gets", async () => {
  const herd = twoServers(3000);
  try {
    await herd.startServer("Ant"); // Bee is not running: Ant's dial is refused
    const ant = herd.servers.get("Ant")!;
    assert.equal(ant.links.some((l) => l.up), false);
    const port = (name: string) => herd.config.servers.find((s) => s.name === name)!.port;
    const asker = await TcpClient.connect(port("Ant"));
    try {
      await asker.send("WHATSAT early-bird 10 1\n");
      // Bee comes up, links, and a client reports to it: the record floods to Ant.
      await herd.startServer("Bee");
      const reply = await exchange(
        port("Bee"),
        "IAMAT early-bird +34.068930-118.445127 1700000000.5\n",
      );
      assert.match(reply, /^AT Bee /);
      const [answer] = await asker.replies(1, 10_000);
      assert.match(answer, /^AT Bee [+-]\d+\.\d+ early-bird /, `got ${JSON.stringify(answer)}`);
    } finally {
      asker.conn.close();
    }
  } finally {
    await herd.stop();
  }
});

Deno.test("grace at start: a server with no neighbours answers an unknown client at once", async () => {
  const [a] = freePorts(1);
  const herd = new Herd(parseConfig({ servers: { Solo: { port: a } } }), {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: "test-secret-0123456789",
    whatsatGraceMs: 3000,
  });
  try {
    await herd.start();
    const t0 = performance.now();
    const reply = await exchange(a, "WHATSAT nobody 10 1\n");
    assert.equal(reply, "? WHATSAT nobody 10 1\n");
    assert.ok(performance.now() - t0 < 2000, "not the grace");
  } finally {
    await herd.stop();
  }
});
