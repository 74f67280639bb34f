/**
 * Exact under real clients' timing, over real TCP: far-future timestamps, commands on one
 * connection taking effect in order, and read-your-writes across the herd.
 */

import { assert, assertEquals, assertMatch } from "./_helpers/assert.ts";
import { exchange, freePorts, seedConfig, startSeedHerd, waitFor } from "./_helpers/net.ts";
import { Herd } from "../servers/herd.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";

const UCLA = "+34.068930-118.445127";
const NAMES = ["Hill", "Jaquez", "Smith", "Campbell", "Singleton"];

/** Now plus `s` seconds, as a protocol time with nanoseconds. */
function timeIn(s: number): string {
  const ns = Temporal.Now.instant().epochNanoseconds + BigInt(Math.round(s * 1e9));
  return `${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, "0")}`;
}

Deno.test("a far-future IAMAT is invalid and does not pin the client: a later real one is accepted everywhere", async () => {
  const t = await startSeedHerd();
  try {
    for (const time of ["99999999999", timeIn(86_400 + 60)]) {
      assertEquals(
        await exchange(t.port("Hill"), `IAMAT alice +0+0 ${time}\n`),
        `? IAMAT alice +0+0 ${time}\n`,
      );
    }
    // Within the limit (a client whose clock runs an hour fast) is still a report.
    const ahead = timeIn(3600);
    assertMatch(await exchange(t.port("Smith"), `IAMAT bob ${UCLA} ${ahead}\n`), /^AT Smith -/);
    const real = timeIn(0);
    assertMatch(
      await exchange(t.port("Hill"), `IAMAT alice ${UCLA} ${real}\n`),
      new RegExp(`^AT Hill \\+\\d+\\.\\d{9} alice \\${UCLA} ${real}\n$`),
    );
    for (const name of NAMES) {
      const reply = await exchange(t.port(name), "WHATSAT alice 10 1\n");
      assert(reply.startsWith(`AT Hill `) && reply.includes(` alice ${UCLA} ${real}\n`), reply);
    }
  } finally {
    await t.close();
  }
});

Deno.test("a peer's record far ahead of the receiver's clock is accepted as its origin accepted it", async () => {
  // Hill runs in its own herd object with a clock allowance of 100 years (like a server whose
  // clock is far ahead); its neighbours keep the default day and must not re-check its records.
  const config = seedConfig(freePorts(5));
  const base = {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: "test-secret-0123456789",
  };
  const skewed = new Herd(config, { ...base, maxFutureS: 3_153_600_000, only: ["Hill"] });
  const rest = new Herd(config, { ...base, only: NAMES.filter((n) => n !== "Hill") });
  const port = (name: string) => config.servers.find((s) => s.name === name)!.port;
  await skewed.start();
  await rest.start();
  try {
    await waitFor(
      () =>
        [skewed, rest].every((h) =>
          h.snapshot().servers.every((s) => !s.running || s.links.every((l) => l.up))
        ),
      5000,
      "links up",
    );
    const future = timeIn(10 * 86_400);
    assertEquals(
      await exchange(port("Smith"), `IAMAT carol ${UCLA} ${future}\n`),
      `? IAMAT carol ${UCLA} ${future}\n`,
      "the receiving server checks",
    );
    assertMatch(await exchange(port("Hill"), `IAMAT carol ${UCLA} ${future}\n`), /^AT Hill -/);
    for (const name of NAMES) {
      await waitFor(
        async () => (await exchange(port(name), "WHATSAT carol 10 1\n")).includes(future),
        3000,
        `carol's record at ${name}`,
      );
    }
  } finally {
    await skewed.stop();
    await rest.stop();
  }
});
