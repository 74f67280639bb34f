/**
 * The herd as separate processes: five `main.ts server NAME` processes form the seed herd over
 * TCP; an IAMAT at one is seen everywhere; a SIGKILLed server leaves the others serving; when it
 * is restarted its links come back, it knows what it knew and what it missed, and new IAMATs flow
 * through it again.
 */

import assert from "node:assert/strict";
import { iamat, ProcessHerd, waitKnown, whatsat } from "./_helpers/procs.ts";
import { exchange } from "./_helpers/net.ts";

const LOC = "+34.068930-118.445127";

Deno.test("processes: five server processes; kill -9 one; the rest serve; restart rejoins", async () => {
  await using herd = await ProcessHerd.create({ places: "offline" });
  await herd.startAll();
  await herd.waitLinksUp();
  const all = herd.names;
  const expected = new Map<string, string>();

  // An IAMAT at one server is seen at all five, right after the AT reply.
  const first = await iamat(herd.port("Hill"), "proc.kiwi", LOC, "1700000000.5");
  assert.match(
    first,
    /^AT Hill [+-]\d+\.\d{9} proc\.kiwi \+34\.068930-118\.445127 1700000000\.5$/,
  );
  expected.set("proc.kiwi", first);
  for (const s of all) {
    assert.equal(await whatsat(herd.port(s), "proc.kiwi"), first, `WHATSAT at ${s}`);
  }

  // Kill Singleton (a hub: three links). The other four are still connected through Hill–Smith.
  await herd.kill("Singleton");
  const survivors = all.filter((s) => s !== "Singleton");
  for (const s of survivors) {
    const at = await iamat(herd.port(s), `down.${s}`, "+10-20", "1700000001");
    assert.ok(at.startsWith(`AT ${s} `));
    expected.set(`down.${s}`, at);
  }
  await waitKnown(herd, survivors, expected, 5000);
  // A refused connection at the dead server's port: it really is gone.
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: herd.port("Singleton") }));

  // Restart it: its links come back, it has the old record (from disk) and the missed ones
  // (catch-up), and its own new IAMATs reach everyone.
  const t0 = performance.now();
  await herd.start("Singleton");
  await herd.waitLinksUp();
  const linksMs = performance.now() - t0;
  const caughtUpMs = await waitKnown(herd, ["Singleton"], expected, 5000);
  const after = await iamat(
    herd.port("Singleton"),
    "back.Singleton",
    "-33.9+151.2",
    "1700000002",
  );
  expected.set("back.Singleton", after);
  const floodMs = await waitKnown(herd, all, expected, 5000);
  // Its Places answers too (the offline index, rebuilt at start).
  const reply = await exchange(herd.port("Singleton"), "WHATSAT proc.kiwi 10 3\n");
  assert.ok(reply.startsWith(first + "\n{") && reply.endsWith("}\n\n"), reply.slice(0, 200));
  assert.match(reply, /"status"\s*:\s*"OK"/);
  assert.match(reply, /Santa Monica|Beverly Hills|Westwood/);
  const log = await herd.log("Singleton");
  for (const peer of ["Jaquez", "Smith", "Campbell"]) {
    assert.match(log.slice(log.lastIndexOf(" UP listening on ")), new RegExp(`LINK UP ${peer} `));
  }
  // Its neighbours logged the link going down and coming back.
  assert.match(await herd.log("Smith"), /LINK DOWN Singleton .*\n(.*\n)*.*LINK UP Singleton /);
  console.log(
    `  restart: links up in ${linksMs.toFixed(0)} ms, caught up ${
      caughtUpMs.toFixed(0)
    } ms later, ` +
      `new IAMAT everywhere in ${floodMs.toFixed(0)} ms`,
  );
});
