/**
 * WHATSAT figure: latency and throughput of `WHATSAT <client> 50 20` (the largest radius and
 * bound the protocol allows) for clients in a dense area (Los Angeles), at 1 and 32 connections
 * (closed loop, bench/load.ts `whatsat` mode), with two Places providers:
 *
 * - `offline`: the GeoNames index on the box (servers/places/offline.ts): a k-d tree query and
 *   the legacy JSON of 20 cities, no network;
 * - `new` against the tests' fake Google on loopback (bench/fake_google_server.ts, its own
 *   process): a real HTTP request per query through the load control (16 in flight by default),
 *   the fake's answer translated to the legacy shape. The fake answers at once with 3 places, so
 *   this is the herd's own cost of a Google round trip, not Google's latency.
 *
 * Each connection's client reports from 100 m further north than the previous one's, so the 32
 * connections ask 32 different queries (identical queries in flight would be coalesced into one
 * upstream request). The herd is `main.ts start --memory`. There is no baseline: the asyncio
 * seed herd has no Places provider.
 *
 * Run alone: `deno run -A bench/run.ts --only whatsat [--quick]`.
 *
 * @module
 */

import {
  decoder,
  encoder,
  loadavg,
  measure,
  openClient,
  type Plan,
  type Point,
  progress,
  ROOT,
  startProcess,
} from "./common.ts";
import { lineEnd, whatsatEnd } from "./load.ts";
import { launchStart, makeHerdDir, waitForHerdLinks } from "./herd_proc.ts";
import { HERD_NAMES } from "./common.ts";
import { randomHex } from "./observer.ts";

/** Downtown Los Angeles. */
export const LOS_ANGELES = "+34.052235-118.243683";
const RADIUS = "50";
const BOUND = "20";

/** One provider's WHATSAT points. */
export interface WhatsatSeries {
  provider: string;
  points: Point[];
  /** One probe reply before the load: its status, result count and size. */
  probe: { status: string; results: number; bytes: number } | null;
  /** Fake Google only: upstream requests it got, and the most at once. */
  upstream?: { requests: number; maxInFlight: number } | null;
  loadavg: number;
}

/** The WHATSAT figure. */
export interface WhatsatReport {
  radiusKm: number;
  bound: number;
  location: string;
  series: WhatsatSeries[];
}

async function probe(port: number): Promise<WhatsatSeries["probe"]> {
  const c = await openClient(port);
  try {
    const client = `probe-${randomHex(4)}`;
    await c.request(encoder.encode(`IAMAT ${client} ${LOS_ANGELES} 1700000000.5\n`), lineEnd);
    const reply = await c.request(
      encoder.encode(`WHATSAT ${client} ${RADIUS} ${BOUND}\n`),
      whatsatEnd,
    );
    const text = decoder.decode(reply);
    const body = JSON.parse(new TextDecoder().decode(reply.subarray(text.indexOf("\n") + 1)));
    return { status: body.status, results: body.results.length, bytes: reply.length };
  } catch {
    return null;
  } finally {
    c.close();
  }
}

async function series(
  plan: Plan,
  logDir: string,
  provider: string,
  places: string[],
  env: Record<string, string>,
): Promise<WhatsatSeries> {
  const dir = await makeHerdDir(30000);
  const herd = await launchStart(dir, `${logDir}/whatsat-${provider.split(" ")[0]}-herd.log`, {
    places,
    env,
  }).catch(async (e) => {
    await dir.remove(); // the finally below is not reached
    throw e;
  });
  try {
    if (!(await waitForHerdLinks(dir, HERD_NAMES, 15_000))) throw new Error("links not up");
    const port = dir.ports.Hill;
    const first = await probe(port);
    const points: Point[] = [];
    for (const c of plan.whatsatConnections) {
      progress(`[whatsat] ${provider}: WHATSAT ${RADIUS} ${BOUND} x ${c} connections`);
      const extraArgs = [
        "--radius",
        RADIUS,
        "--bound",
        BOUND,
        "--location",
        LOS_ANGELES,
        "--spread-m",
        "100",
      ];
      points.push(
        (await measure(plan, `WHATSAT ${provider}`, port, "whatsat", c, 0, { extraArgs }))[0],
      );
    }
    return { provider, points, probe: first, loadavg: loadavg() };
  } finally {
    await herd.stop();
    await dir.remove();
  }
}

/** Runs the WHATSAT figure: offline index, then fake Google on loopback. */
export async function benchWhatsat(plan: Plan, logDir: string): Promise<WhatsatReport> {
  const out: WhatsatSeries[] = [];
  out.push(await series(plan, logDir, "offline index", ["--places", "offline"], {}));

  const key = `bench-${randomHex(8)}`;
  const fakeLog = `${logDir}/fake-google.log`;
  const fake = await startProcess(
    Deno.execPath(),
    ["run", "-A", `${ROOT}bench/fake_google_server.ts`, "--key", key],
    fakeLog,
    { ready: /^READY http/, readyMs: 30_000 },
  );
  let s: WhatsatSeries;
  try {
    const origin = fake.readyLine.split(" ")[1];
    s = await series(
      plan,
      logDir,
      "fake Google (new API, loopback)",
      ["--places", "new", "--places-url", origin],
      { GOOGLE_PLACES_API_KEY: key },
    );
  } finally {
    await fake.stop();
  }
  const lines = decoder.decode(await Deno.readFile(fakeLog)).trim().split("\n");
  try {
    s.upstream = JSON.parse(lines[lines.length - 1]);
  } catch {
    s.upstream = null;
  }
  out.push(s);
  return { radiusKm: Number(RADIUS), bound: Number(BOUND), location: LOS_ANGELES, series: out };
}
