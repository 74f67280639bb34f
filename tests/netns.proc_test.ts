/**
 * Multi-host faults for real: five `main.ts server` processes as five hosts, each in
 * a network namespace of its own on a test bridge (tests/_helpers/netns.ts), with `--sync-ack`.
 * Under a steady load of IAMATs at all five, the network is cut 1 | 4, then 2 | 3 with one slow
 * lossy link (64 kbit/s, 5 % loss) inside the three; both servers of the two are SIGKILLed (what
 * they acknowledged since the cut is then on their disks only) and restarted, still cut off; then
 * everything heals. Every server must then hold, for every client, its newest acknowledged record
 * (or a newer one the client sent whose reply was lost), all five the same, within 20 s.
 *
 * Needs root, iproute2 and iptables; without them it is skipped with a loud warning, and under
 * CI it fails.
 */

import assert from "node:assert/strict";
import { netnsTest } from "./_helpers/netns.ts";
import { iamat, ProcessHerd, whatsatMany } from "./_helpers/procs.ts";

const NAMES = ["Hill", "Jaquez", "Smith", "Campbell", "Singleton"];
/** Load: two workers per server, each with its own clients, one IAMAT at a time. */
const WORKERS_PER_SERVER = 2;
const CLIENTS_PER_WORKER = 10;
const PACE_MS = 20;
const MAX_PER_WORKER = 2000;
/** How long the herd may take, once healed and the load has stopped, to agree on everything. */
const CONVERGE_MS = 20_000;
/**
 * A cut link is seen down by heartbeat at both ends, the one streaming records into it too: 3.0-3.5
 * s after the last byte read; a loaded machine may add some.
 */
const LINK_DOWN_MS = 5_000;
/**
 * Every link is back within this after healing: a dial pending during the cut gives up after a
 * heartbeat interval (1 s), the next goes out after at most the backoff cap (1 s, +25 % jitter).
 */
const RELINK_MS = 3_500;
/**
 * Campbell's link in the 2|3 phase: slow enough that the load's bursts queue behind the rate
 * limit (1 Mbit/s never would: the herd sends a few KB/s here), and lossy.
 */
const LOSSY_LINK = { kbit: 64, lossPercent: 5 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * What the load knows: per client, the newest acknowledged AT line, and every IAMAT sent later
 * that got no reply (it may or may not have been stored, so the herd may settle on it).
 */
class Ledger {
  readonly acked = new Map<string, { line: string; time: number }>();
  readonly unanswered = new Map<string, Set<string>>();
  ackCount = 0;
  failCount = 0;
  #byOrigin = new Map<string, number>();

  ack(client: string, line: string): void {
    this.ackCount++;
    const origin = line.split(" ")[1];
    this.#byOrigin.set(origin, (this.#byOrigin.get(origin) ?? 0) + 1);
    this.acked.set(client, { line, time: Number(line.split(" ")[5]) });
  }

  fail(client: string, location: string, time: string): void {
    this.failCount++;
    const set = this.unanswered.get(client) ?? new Set();
    set.add(`${location} ${time}`);
    this.unanswered.set(client, set);
  }

  /** The newest acknowledged record of each client whose newest acknowledgement came from these. */
  ackedBy(servers: readonly string[]): Map<string, { line: string; time: number }> {
    return new Map([...this.acked].filter(([, r]) => servers.includes(r.line.split(" ")[1])));
  }

  /** How many acknowledgements these servers gave so far. */
  ackedAt(servers: readonly string[]): number {
    return servers.reduce((n, s) => n + (this.#byOrigin.get(s) ?? 0), 0);
  }

  clients(): string[] {
    return [...new Set([...this.acked.keys(), ...this.unanswered.keys()])];
  }

  /** Why `line` (or `?`) is not an acceptable final answer for `client`, or undefined if it is. */
  wrong(client: string, line: string | undefined): string | undefined {
    const acked = this.acked.get(client);
    if (line === undefined) return acked ? `? but ${acked.line} was acknowledged` : undefined;
    if (line === acked?.line) return undefined;
    const f = line.split(" ");
    const newer = acked === undefined || Number(f[5]) > acked.time;
    if (newer && this.unanswered.get(client)?.has(`${f[4]} ${f[5]}`)) return undefined;
    return `${line}, but ${acked ? acked.line : "nothing"} was acknowledged last`;
  }
}

/** A bounded stream of IAMATs at one server until `stop()`; failures back off briefly. */
async function worker(
  herd: ProcessHerd,
  server: string,
  id: string,
  ledger: Ledger,
  stop: () => boolean,
): Promise<void> {
  for (let i = 0; i < MAX_PER_WORKER && !stop(); i++) {
    const client = `${id}.c${i % CLIENTS_PER_WORKER}`;
    // Times rise with i, so each client's IAMATs are in order; locations vary.
    const time = `${1_700_000_000 + i}.5`;
    const location = `+${String(10 + (i % 70)).padStart(2, "0")}.25-${100 + (i % 70)}.75`;
    try {
      ledger.ack(client, await iamat(herd.port(server), client, location, time, herd.host(server)));
    } catch {
      ledger.fail(client, location, time);
      await sleep(100); // the server is down, or the reply was lost
    }
    await sleep(PACE_MS);
  }
}

/** Waits until each named link is up, or down, at both ends (by the logs); returns how long that took. */
async function waitLinks(
  herd: ProcessHerd,
  pairs: [string, string][],
  want: "up" | "down",
  ms: number,
): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const wrong: string[] = [];
    for (const [a, b] of pairs) {
      const ends = [(await herd.links(a)).get(b), (await herd.links(b)).get(a)];
      if (ends.some((up) => up !== (want === "up"))) wrong.push(`${a}-${b}`);
    }
    if (wrong.length === 0) return performance.now() - t0;
    if (performance.now() - t0 > ms) {
      throw new Error(`after ${ms} ms, links not ${want}: ${wrong.join(", ")}`);
    }
    await sleep(50);
  }
}

/** Which of these links are up at both ends now. */
async function upNow(herd: ProcessHerd, pairs: [string, string][]): Promise<[string, string][]> {
  const up: [string, string][] = [];
  for (const [a, b] of pairs) {
    if ((await herd.links(a)).get(b) && (await herd.links(b)).get(a)) up.push([a, b]);
  }
  return up;
}

/**
 * When each end of each link first logged it down after `since` (ms since the epoch), from the
 * whole log (a later run's lines included): "a>b 3.1 s (heartbeat timeout)", or "a>b never".
 */
async function downTimes(herd: ProcessHerd, pairs: [string, string][], since: number) {
  const out: string[] = [];
  for (const [a, b] of pairs) {
    for (const [x, y] of [[a, b], [b, a]]) {
      const m = [...(await herd.log(x)).matchAll(/^(\S+) LINK DOWN (\S+) \((.*)\)$/gm)]
        .find((m) => m[2] === y && Date.parse(m[1]) >= since);
      out.push(
        m
          ? `${x}>${y} ${((Date.parse(m[1]) - since) / 1000).toFixed(1)} s (${m[3]})`
          : `${x}>${y} never`,
      );
    }
  }
  return out.join(", ");
}

/** The links of the herd's topology between two groups. */
function across(herd: ProcessHerd, a: string[], b: string[]): [string, string][] {
  return a.flatMap((x) =>
    herd.topology[x].filter((y) => b.includes(y)).map((y): [string, string] => [x, y])
  );
}

/** An IAMAT at `at` that must stay unknown (`?`) at every server of `cutOff` for a while. */
async function probeCut(
  herd: ProcessHerd,
  ledger: Ledger,
  at: string,
  cutOff: string[],
  client: string,
): Promise<void> {
  // Newer than every load record, and in the past (times over a day ahead are invalid).
  const line = await iamat(herd.port(at), client, "+1.5-2.5", "1790000000", herd.host(at));
  ledger.ack(client, line);
  await sleep(500);
  for (const s of cutOff) {
    // Long enough for the slow lossy host: 64 kbit shared with the load, where a lost SYN or
    // FIN is sent again only after one, then three seconds (seen: 5 s was too short under CI).
    const got = await whatsatMany(herd.port(s), [client], 20_000, herd.host(s));
    assert.equal(got.get(client), undefined, `${s} learned ${client} across the partition`);
  }
}

/**
 * Polls the servers until each holds, for every client of `records`, that record or a newer one
 * (the load goes on meanwhile); returns how long that took.
 */
async function waitAtLeast(
  herd: ProcessHerd,
  servers: readonly string[],
  records: ReadonlyMap<string, { line: string; time: number }>,
  ms: number,
): Promise<number> {
  const t0 = performance.now();
  const clients = [...records.keys()];
  for (;;) {
    const missing: string[] = [];
    for (const s of servers) {
      const got = await whatsatMany(herd.port(s), clients, 10_000, herd.host(s));
      for (const [c, r] of records) {
        const line = got.get(c);
        if (line !== r.line && !(line && Number(line.split(" ")[5]) > r.time)) {
          missing.push(`${s}:${c}=${line ?? "?"} (acknowledged ${r.line})`);
        }
      }
    }
    if (missing.length === 0) return performance.now() - t0;
    if (performance.now() - t0 > ms) {
      throw new Error(`after ${ms} ms, ${missing.length} lost: ${missing.slice(0, 5).join("; ")}`);
    }
    await sleep(250);
  }
}

/** Polls every server until all hold an acceptable, identical answer for every client. */
async function waitConverged(herd: ProcessHerd, ledger: Ledger, ms: number): Promise<number> {
  const t0 = performance.now();
  const clients = ledger.clients();
  for (;;) {
    const problems: string[] = [];
    const answers = await Promise.all(
      herd.names.map((s) => whatsatMany(herd.port(s), clients, 10_000, herd.host(s))),
    );
    for (const c of clients) {
      answers.forEach((got, i) => {
        const why = ledger.wrong(c, got.get(c));
        if (why !== undefined) problems.push(`${herd.names[i]}:${c}: ${why}`);
      });
      if (new Set(answers.map((got) => got.get(c))).size > 1) problems.push(`${c}: servers differ`);
    }
    if (problems.length === 0) return performance.now() - t0;
    if (performance.now() - t0 > ms) {
      throw new Error(
        `after ${ms} ms: ${problems.slice(0, 8).join("; ")} (${problems.length} in all)`,
      );
    }
    await sleep(250);
  }
}

netnsTest(
  "netns: five hosts under load; partition 1|4, then 2|3 with a slow lossy link; kill -9 two while partitioned; after healing every acknowledged record is everywhere",
  NAMES,
  async (net) => {
    let herd: ProcessHerd | undefined;
    let stopped = false;
    let load: Promise<void[]> = Promise.resolve([]);
    try {
      herd = await ProcessHerd.create({
        host: (n) => net.address(n),
        wrap: (n) => net.wrap(n),
        args: () => ["--sync-ack", "--whatsat-grace-ms", "0"],
      });
      const h = herd;
      await h.startAll();
      await h.waitLinksUp(20_000);

      const ledger = new Ledger();
      load = Promise.all(
        NAMES.flatMap((s) =>
          Array.from(
            { length: WORKERS_PER_SERVER },
            (_, k) => worker(h, s, `${s}.w${k}`, ledger, () => stopped),
          )
        ),
      );
      const log: string[] = [];
      const mark = (what: string) => log.push(`${what} (${ledger.ackCount} acked)`);
      await sleep(1000);
      mark("load running");

      // 1 | 4: Hill alone.
      const one = ["Hill"];
      const four = NAMES.filter((n) => !one.includes(n));
      const cut1 = across(h, one, four);
      const up1 = await upNow(h, cut1);
      const since1 = Date.now();
      await net.partition([one, four]);
      await waitLinks(h, cut1, "down", LINK_DOWN_MS);
      mark(`1|4: links down ${Date.now() - since1} ms after the cut began`);
      await probeCut(h, ledger, "Hill", four, "probe.1of4");
      await probeCut(h, ledger, "Campbell", one, "probe.4of1");

      // 2 | 3, with Campbell's link slow and lossy. Then SIGKILL both servers of the two: what
      // they acknowledged since the cut exists on their two disks and nowhere else.
      const two = ["Hill", "Jaquez"];
      const three = ["Smith", "Campbell", "Singleton"];
      const cut2 = across(h, two, three);
      const up2 = await upNow(h, cut2);
      const since2 = Date.now();
      const before = ledger.ackedAt(two);
      await net.partition([two, three]);
      await net.degrade("Campbell", LOSSY_LINK);
      await waitLinks(h, cut2, "down", LINK_DOWN_MS);
      mark(`2|3: links down ${Date.now() - since2} ms after the cut began`);
      await probeCut(h, ledger, "Hill", three, "probe.2of3");
      await probeCut(h, ledger, "Smith", two, "probe.3of2");
      await h.killAll(two);
      const onlyOnDisk = ledger.ackedAt(two) - before;
      const atKill = ledger.ackedBy(two);
      mark(`killed ${two.join(", ")}`);
      await sleep(1000);
      await h.startAll(two);
      // Still cut off from the three: what they acknowledged can only come from their disks.
      const back = await waitAtLeast(h, two, atKill, 10_000);
      mark(
        `restarted them, still partitioned: their ${atKill.size} clients' records back in ${
          back.toFixed(0)
        } ms`,
      );
      await sleep(500);

      // Heal; the load stops a moment later, then everyone must agree, and every link comes back.
      const faults = await net.counters();
      const links = NAMES.flatMap((a) =>
        h.topology[a].filter((b) => a < b).map((b): [string, string] => [a, b])
      );
      await net.heal();
      const tHeal = performance.now();
      const relinked = waitLinks(h, links, "up", RELINK_MS);
      relinked.catch(() => {}); // awaited below
      mark("healed");
      await sleep(500);
      stopped = true;
      await load;
      mark("load stopped");
      const converged = await waitConverged(h, ledger, CONVERGE_MS);
      mark(
        `converged ${converged.toFixed(0)} ms after the load stopped, ` +
          `${(performance.now() - tHeal).toFixed(0)} ms after healing`,
      );
      mark(`all links up ${(await relinked).toFixed(0)} ms after healing`);
      h.assertHealthy(); // all five running, none printed an uncaught error
      // The faults really happened: the cuts and the loss dropped packets, the rate limit bit.
      assert.ok(
        faults.partitioned > 0 && faults.lost > 0 && faults.overlimits > 0,
        JSON.stringify(faults),
      );
      console.log(
        `  ${ledger.ackCount} IAMATs acknowledged (${onlyOnDisk} of them, acknowledged by ` +
          `${two.join(" and ")} since the 2|3 cut, only on their disks when killed), ` +
          `${ledger.failCount} unanswered, ${ledger.clients().length} clients; packets dropped ` +
          `by partitions ${faults.partitioned}, by loss ${faults.lost}; held by the rate limit ` +
          `${faults.overlimits}\n  ${log.join("\n  ")}\n  1|4 links seen down: ` +
          `${await downTimes(h, up1, since1)}\n  2|3 links seen down: ` +
          `${await downTimes(h, up2, since2)}`,
      );
    } finally {
      stopped = true;
      await load.catch(() => {});
      await herd?.close(); // throws when a server printed an uncaught error
    }
  },
);

/** `n` IAMATs pipelined on one connection; resolves with the number of replies read. */
async function burst(host: string, port: number, n: number, ms: number): Promise<number> {
  const conn = await Deno.connect({ hostname: host, port });
  let text = "";
  for (let i = 0; i < n; i++) text += `IAMAT burst.${i} +12.5-45.5 1700000000.${i}\n`;
  const write = (async () => {
    const bytes = new TextEncoder().encode(text);
    for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
  })().catch(() => {}); // closed below when the replies stop coming
  const buf = new Uint8Array(64 * 1024);
  let replies = 0;
  const until = performance.now() + ms;
  try {
    while (replies < n && performance.now() < until) {
      const got = await conn.read(buf);
      if (got === null) break;
      for (let i = 0; i < got; i++) if (buf[i] === 10) replies++;
    }
  } finally {
    conn.close();
    await write;
  }
  return replies;
}

netnsTest(
  "netns: a link cut while one end streams a burst into it is seen down at both ends within 5 s, and relinks within 3.5 s of healing however long the cut was",
  ["Hill", "Jaquez"],
  async (net) => {
    let herd: ProcessHerd | undefined;
    try {
      herd = await ProcessHerd.create({
        topology: { Hill: ["Jaquez"], Jaquez: ["Hill"] },
        host: (n) => net.address(n),
        wrap: (n) => net.wrap(n),
      });
      const h = herd;
      await h.startAll();
      await h.waitLinksUp(20_000);
      const link: [string, string][] = [["Hill", "Jaquez"]];

      // Cut, then load Hill: everything it accepts is for Jaquez, far more than a socket buffer
      // holds, so its writes to Jaquez stay pending.
      const since = Date.now();
      await net.partition([["Hill"], ["Jaquez"]]);
      const n = 20_000;
      const loaded = burst(h.host("Hill"), h.port("Hill"), n, 30_000);
      const down = await waitLinks(h, link, "down", LINK_DOWN_MS);
      assert.equal(await loaded, n, "Hill answered the whole burst");

      // Heal 12.5 s after the drop: a connect pending since then has sent its SYNs at 0, 1, ...,
      // 5, 7 and 11 s (this kernel's linear timeouts, then doubling), and the next is ~6.5 s away.
      await sleep(Math.max(0, since + down + 12_500 - Date.now()));
      await net.heal();
      const relink = await waitLinks(h, link, "up", RELINK_MS);
      // And the burst, which waited for the link, gets through.
      await waitAtLeast(
        h,
        ["Jaquez"],
        new Map([[`burst.${n - 1}`, {
          line: "",
          time: 1700000000,
        }]]),
        20_000,
      );
      h.assertHealthy();
      console.log(
        `  both ends down ${(down / 1000).toFixed(1)} s after the cut ` +
          `(${await downTimes(h, link, since)}), up ${relink.toFixed(0)} ms after healing`,
      );
    } finally {
      await herd?.close();
    }
  },
);
