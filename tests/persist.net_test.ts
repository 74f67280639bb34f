/**
 * servers/persist.ts in a running herd: restarting one server of a process (the dashboard's Stop
 * and Start in `start`) replays its record log in turns, so the other servers of that process
 * keep answering meanwhile.
 */

import assert from "node:assert/strict";
import process from "node:process";
import { parseConfig } from "../servers/config.ts";
import { Herd } from "../servers/herd.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { EntryBuffer, openLogPersistence } from "../servers/persist.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";
import { exchange, freePorts } from "./_helpers/net.ts";

const RECORDS = 150_000;

Deno.test("persist: a server restoring 150,000 records lets the other servers of its process answer meanwhile", async () => {
  const dir = await Deno.makeTempDir({ prefix: "herd-persist-net-" });
  const [pa, pb] = freePorts(2);
  const herd = new Herd(parseConfig({ servers: { A: { port: pa }, B: { port: pb } } }), {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: "test-secret-0123456789",
    openPersistence: (name) => openLogPersistence(dir, name),
  });
  let timer: ReturnType<typeof setInterval> | undefined;
  try {
    // B's record log, as B would have written it.
    const log = new EntryBuffer();
    log.add("E 1 0123abcd");
    const parts: Uint8Array[] = [];
    for (let i = 0; i < RECORDS; i++) {
      log.record({
        seq: i + 1,
        origin: "B",
        diff: "+0.123456789",
        client: `client-${i}.example`,
        location: "+34.068930-118.445127",
        time: `${1_700_000_000 + i}.5`,
        via: -1,
      });
      if (log.length > 1 << 20) parts.push(log.take().slice());
    }
    parts.push(log.take().slice());
    const file = await Deno.open(`${dir}/B.records`, { write: true, create: true });
    for (const p of parts) await file.write(p);
    file.close();

    await herd.startServer("A");
    // The longest the event loop went without running a 1 ms timer while B restored, in the
    // process's CPU time: on a loaded box the process is also off the CPU for stretches of wall
    // time that say nothing about the restore (470 ms once at load 29).
    const cpuMs = () => {
      const { user, system } = process.cpuUsage();
      return (user + system) / 1000;
    };
    let last = performance.now();
    let lastCpu = cpuMs();
    let longest = 0;
    let longestCpu = 0;
    timer = setInterval(() => {
      const now = performance.now();
      const cpu = cpuMs();
      longest = Math.max(longest, now - last);
      longestCpu = Math.max(longestCpu, cpu - lastCpu);
      last = now;
      lastCpu = cpu;
    }, 1);
    let started = false;
    const starting = herd.startServer("B").finally(() => (started = true));
    const asked: number[] = [];
    for (let i = 0; !started; i++) {
      const t0 = performance.now();
      const reply = await exchange(pa, `IAMAT meanwhile.${i} +1+1 1700000000\n`, 10_000);
      asked.push(performance.now() - t0);
      assert.match(reply, /^AT A /);
    }
    await starting;
    clearInterval(timer);
    timer = undefined;
    const reply = await exchange(pb, `WHATSAT client-${RECORDS - 1}.example 10 0\n`);
    assert.match(reply, new RegExp(`^AT B \\S+ client-${RECORDS - 1}\\.example `), "B restored");
    console.log(
      `  B restored ${RECORDS} records; meanwhile A answered ${asked.length} IAMATs, slowest ${
        Math.max(...asked).toFixed(0)
      } ms; the event loop's longest stretch ${longest.toFixed(0)} ms (${
        longestCpu.toFixed(0)
      } ms of CPU)`,
    );
    // Without the turns: one piece of 316-401 ms of CPU here (150,000 records; 60,000 made too
    // small a piece to tell apart), with them 36-43 ms (the slice is 20 ms).
    assert.ok(
      longestCpu < 120,
      `the event loop was held ${longestCpu.toFixed(0)} ms of CPU in one piece (${
        longest.toFixed(0)
      } ms of wall time)`,
    );
  } finally {
    if (timer !== undefined) clearInterval(timer);
    await herd.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
