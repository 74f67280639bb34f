/**
 * The herds the bench measures, as it drives them: the {@linkcode HerdHandle} interface, the
 * asyncio seed herd (bench/asyncio_herd.py, five Python processes) and our herd (`main.ts start`,
 * the HOOKS below).
 *
 * @module
 */

import { lineEnd, whatsatEnd } from "./load.ts";
import {
  decoder,
  encoder,
  freePortBase,
  HERD_NAMES,
  herdConfig,
  openClient,
  type Proc,
  ROOT,
  startProcess,
  waitForPorts,
} from "./common.ts";
import { observerWatcher, randomHex, type Watcher } from "./observer.ts";

// Herds: what the bench needs from a running herd, whichever implementation it is.

/** Flooding counters summed over the herd, as returned by {@linkcode HerdHandle.counters}. */
export interface HerdCounters {
  /** Server-to-server messages received, summed over all servers. */
  peerMessages: number;
  /** Records accepted (stored as new) per server. */
  accepted: Record<string, number>;
  /** Flood sends that failed (e.g. connect errors), when the herd counts them. */
  floodErrors?: number;
}

/** A running herd, as the bench drives it. */
export interface HerdHandle {
  /** Series name in the table and chart. */
  label: string;
  /** Server name → port. */
  ports: Record<string, number>;
  /** Where the load and the propagation IAMATs go. */
  entry: string;
  /**
   * Where propagation is observed: the farthest server(s). Only these are polled, since every
   * poll costs the polled server CPU that the flood also needs (on 2 cores that shows).
   */
  observe: string[];
  /** Counters, or null when this herd cannot report them. */
  counters(): Promise<HerdCounters | null>;
  /**
   * Opens a way to see records arrive at `server`; the propagation measurement keeps one open per
   * observed server. How a herd is observed is its own business: WHATSAT polling for the asyncio
   * herd, an event stream for ours.
   */
  watch(server: string, only?: string): Promise<Watcher>;
  /** Short description of how `watch` observes, for the report. */
  watchMethod: string;
  stop(): Promise<void>;
}

/**
 * Observation by WHATSAT polling, back to back on one connection (one poll outstanding): works on
 * any herd, costs the polled server a WHATSAT per round trip, and resolves to within one round
 * trip. The stored AT line names the client's time once the record has arrived.
 */
export async function whatsatWatcher(port: number): Promise<Watcher> {
  const conn = await openClient(port);
  return {
    async arrival(client, time, deadline) {
      const poll = encoder.encode(`WHATSAT ${client} 1 0\n`);
      while (performance.now() < deadline) {
        const reply = await conn.request(poll, whatsatEnd);
        const first = decoder.decode(reply.subarray(0, reply.indexOf(0x0a)));
        if (first.startsWith("AT ") && first.endsWith(` ${time}`)) return performance.now();
      }
      return null;
    },
    close: () => conn.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// Asyncio seed herd (bench/asyncio_herd.py): five python processes.

export async function startAsyncioHerd(logDir: string, python: string): Promise<HerdHandle> {
  const base = freePortBase(5, 22000);
  const ports = Object.fromEntries(HERD_NAMES.map((n, i) => [n, base + i]));
  const starts = HERD_NAMES.map((name) =>
    startProcess(
      python,
      ["bench/asyncio_herd.py", name, "--port-base", String(base)],
      `${logDir}/asyncio-${name}.log`,
      { ready: /^READY / },
    )
  );
  const settled = await Promise.allSettled(starts);
  const procs = settled.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
  const failed = settled.find((r) => r.status === "rejected");
  if (failed) {
    await Promise.all(procs.map((p) => p.stop()));
    throw (failed as PromiseRejectedResult).reason;
  }
  /** Its STATS command (a baseline-only extra): one JSON line of counters per server. */
  const counters = async (): Promise<HerdCounters> => {
    const out: HerdCounters = { peerMessages: 0, accepted: {}, floodErrors: 0 };
    await Promise.all(HERD_NAMES.map(async (name) => {
      const c = await openClient(ports[name]);
      try {
        const line = decoder.decode(
          await c.request(encoder.encode("STATS\n"), lineEnd),
        );
        const s = JSON.parse(line.slice(line.indexOf("{")));
        out.peerMessages += s.peer_msgs;
        out.accepted[name] = s.accepted;
        out.floodErrors! += s.flood_errors;
      } finally {
        c.close();
      }
    }));
    return out;
  };
  return {
    label: "asyncio herd",
    ports,
    entry: "Hill",
    observe: ["Singleton"],
    counters,
    watch: (server) => whatsatWatcher(ports[server]),
    watchMethod: "WHATSAT polling",
    stop: async () => {
      await Promise.all(procs.map((p) => p.stop()));
    },
  };
}

// =============================================================================================
// HOOKS: our herd. Everything the bench needs from main.ts is here; the rest is shared.
// =============================================================================================

/**
 * HOOK 1 (start): `deno run -A main.ts start --config F --log-dir D --data-dir D --no-dashboard
 * --places offline` on a free port block with the default topology, with a HERD_SECRET the bench
 * knows (for HOOK 4), and waits for all five ports. Null (series skipped) while main.ts is absent
 * or does not come up. The offline Places provider keeps WHATSAT on the box and free.
 */
export async function startOurHerd(logDir: string): Promise<HerdHandle | null> {
  try {
    await Deno.stat(`${ROOT}main.ts`);
  } catch {
    console.error("[our herd] main.ts not there yet: skipped");
    return null;
  }
  const base = freePortBase(5, 32000);
  const work = await Deno.makeTempDir({ prefix: "herd-bench-" });
  const config = `${work}/herd.json`;
  await Deno.writeTextFile(config, JSON.stringify(herdConfig(base)));
  await Deno.mkdir(`${work}/logs`);
  await Deno.mkdir(`${work}/data`);
  const ports = Object.fromEntries(HERD_NAMES.map((n, i) => [n, base + i]));
  const secret = randomHex(32);
  let proc: Proc;
  try {
    proc = await startProcess(
      Deno.execPath(),
      [
        "run",
        "-A",
        "main.ts",
        "start",
        "--config",
        config,
        "--log-dir",
        `${work}/logs`,
        "--data-dir",
        `${work}/data`,
        ...OUR_HERD_FLAGS,
      ],
      `${logDir}/our-herd.log`,
      { env: { HERD_SECRET: secret } },
    );
  } catch (e) {
    await Deno.remove(work, { recursive: true }).catch(() => {});
    throw e;
  }
  const cleanup = async () => {
    await proc.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  };
  if (!(await waitForPorts(Object.values(ports), 30000))) {
    await cleanup();
    console.error(`[our herd] did not open ports ${base}..${base + 4}: skipped (see logs)`);
    return null;
  }
  const logs = new LogCounts(`${work}/logs`);
  const handle: HerdHandle = {
    label: "our herd",
    ports,
    entry: "Hill",
    // Both servers two hops from Hill: the observer stream is cheap enough to watch both.
    observe: ["Singleton", "Campbell"],
    counters: () => logs.read(),
    watchMethod: "observer event stream (HERD2 observer handshake)",
    watch: async (server, only) => {
      try {
        return await observerWatcher(ports[server], server, secret, only);
      } catch (e) {
        console.error(`[our herd] observer refused (${(e as Error).message}): WHATSAT polling`);
        handle.watchMethod = "WHATSAT polling (observer refused)";
        return await whatsatWatcher(ports[server]);
      }
    },
    stop: cleanup,
  };
  return handle;
}

/** HOOK 2 (flags): extra flags for `main.ts start`. */
const OUR_HERD_FLAGS = ["--no-dashboard", "--places", "offline"];

/**
 * HOOK 3 (counters): counts, in `<log-dir>/<Server>.log`, the records of the `RECV from X
 * <n> record(s)` lines (one line per batch received over a peer link) and the `ACCEPT` lines
 * (records stored). Reads each
 * file incrementally from where it stopped, so the large IAMAT logs are read once. Tied to the
 * line format of servers/log.ts: `<ISO time> <KIND> <details>`.
 */
class LogCounts {
  #offsets = new Map<string, number>();
  #tails = new Map<string, string>();
  #recv = 0;
  #accepted: Record<string, number> = Object.fromEntries(HERD_NAMES.map((n) => [n, 0]));
  #buf = new Uint8Array(1 << 20);
  constructor(readonly dir: string) {}

  async read(): Promise<HerdCounters> {
    for (const name of HERD_NAMES) {
      let file: Deno.FsFile;
      try {
        file = await Deno.open(`${this.dir}/${name}.log`);
      } catch {
        continue; // not written yet
      }
      try {
        let offset = this.#offsets.get(name) ?? 0;
        await file.seek(offset, Deno.SeekMode.Start);
        let tail = this.#tails.get(name) ?? "";
        while (true) {
          const n = await file.read(this.#buf);
          if (n === null) break;
          offset += n;
          const lines = (tail + decoder.decode(this.#buf.subarray(0, n))).split("\n");
          tail = lines.pop()!;
          for (const line of lines) {
            const recv = /^\S+ RECV from \S+ (\d+) record/.exec(line);
            if (recv !== null) this.#recv += Number(recv[1]);
            else if (/^\S+ ACCEPT /.test(line)) this.#accepted[name]++;
          }
        }
        this.#offsets.set(name, offset);
        this.#tails.set(name, tail);
      } finally {
        file.close();
      }
    }
    return { peerMessages: this.#recv, accepted: { ...this.#accepted } };
  }
}

/**
 * HOOK 4 (observation): an authenticated observer stream (servers/observe.ts) on a server; a
 * record has arrived when its `location.accepted` EVENT line is read. See bench/observer.ts.
 */
