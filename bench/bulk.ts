/**
 * Bulk loader: stores many distinct clients in a herd as fast as the herd takes them, by
 * pipelining IAMATs (docs/protocol.md: several commands on one connection are answered in order).
 * Used by bench/memory.ts and bench/catchup.ts; run it as its own process so that building and
 * writing a million lines does not share an event loop with the orchestrator's probes:
 *
 *     deno run -A bench/bulk.ts --ports 12000,12001 --count 1000000 [--prefix c] \
 *       [--connections-per-port 1] [--window 2048] [--timeout-ms 600000]
 *
 * Client `i` (0 ≤ i < count) is `<prefix><i>.bench.example` (about 20 bytes, like a host name),
 * at a location that varies with `i` (so no two records share their text), with one time per
 * run. Clients are dealt round-robin to the connections (one or more per port), so every port
 * gets about count/ports of them. Each connection keeps at most `window` IAMATs unanswered; the
 * server stops reading a connection with 1,024 replies unwritten, so a larger window only fills
 * socket buffers.
 *
 * Prints one JSON line: {count, replies, errors, errorSamples, ms, rate}. Loopback only; exits
 * after `--timeout-ms` whatever the herd does.
 *
 * @module
 */

import { parseArgs } from "node:util";

const NL = 0x0a;
const encoder = new TextEncoder();
const decoder = new TextDecoder("latin1");

/** What one bulk load did. */
export interface BulkResult {
  count: number;
  /** `AT` replies read. */
  replies: number;
  /** Replies that were not `AT ...`, plus connection failures. */
  errors: number;
  errorSamples: string[];
  ms: number;
  /** Replies per second over the whole load. */
  rate: number;
}

/** The client id of record `i` of a bulk load with `prefix`. */
export function bulkClient(prefix: string, i: number): string {
  return `${prefix}${i}.bench.example`;
}

/** A location that differs for every `i` below 10^6 and lies around Los Angeles. */
export function bulkLocation(i: number): string {
  const lat = 33 + (i % 1000) / 1000 + 0.000123;
  const lng = -118 - Math.floor(i / 1000) / 1000 - 0.000456;
  return `+${lat.toFixed(6)}${lng.toFixed(6)}`;
}

/** Loads `count` clients over `connectionsPerPort` connections to each port. */
export async function bulkLoad(opts: {
  ports: number[];
  count: number;
  prefix: string;
  connectionsPerPort: number;
  window: number;
  timeoutMs: number;
}): Promise<BulkResult> {
  const started = performance.now();
  const time = `${Math.floor(Date.now() / 1000)}.123456789`;
  const targets = opts.ports.flatMap((p) => Array(opts.connectionsPerPort).fill(p) as number[]);
  const errorSamples: string[] = [];
  let errors = 0;
  let replies = 0;
  const fail = (msg: string) => {
    errors++;
    if (errorSamples.length < 5) errorSamples.push(msg);
  };

  const runConnection = async (k: number, port: number) => {
    const mine: number[] = [];
    for (let i = k; i < opts.count; i += targets.length) mine.push(i);
    if (mine.length === 0) return;
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    let sent = 0;
    let answered = 0;
    let wake: (() => void) | undefined;
    // Reader: counts reply lines; a line not starting with "AT " is an error.
    const reader = (async () => {
      const buf = new Uint8Array(256 * 1024);
      let atLineStart = true;
      while (answered < mine.length) {
        const n = await conn.read(buf);
        if (n === null) throw new Error("connection closed by server");
        for (let j = 0; j < n; j++) {
          if (atLineStart && buf[j] !== 0x41) {
            const end = buf.indexOf(NL, j);
            fail(`bad reply: ${decoder.decode(buf.subarray(j, end < 0 ? n : end))}`);
          }
          atLineStart = buf[j] === NL;
          if (atLineStart) answered++;
        }
        wake?.();
      }
    })();
    reader.catch(() => {});
    // Writer: batches of lines, never more than `window` unanswered.
    const batch = Math.max(1, Math.min(256, opts.window));
    while (sent < mine.length) {
      while (sent - answered > opts.window - batch) {
        await new Promise<void>((r) => wake = r);
        wake = undefined;
      }
      let text = "";
      const end = Math.min(mine.length, sent + batch);
      for (let j = sent; j < end; j++) {
        const i = mine[j];
        text += `IAMAT ${bulkClient(opts.prefix, i)} ${bulkLocation(i)} ${time}\n`;
      }
      const bytes = encoder.encode(text);
      let off = 0;
      while (off < bytes.length) off += await conn.write(bytes.subarray(off));
      sent = end;
    }
    try {
      await reader;
    } finally {
      try {
        conn.close();
      } catch { /* closed */ }
      replies += answered;
    }
  };

  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.all(targets.map((port, k) => runConnection(k, port).catch((e) => fail(String(e))))),
    new Promise<void>((r) => {
      timer = setTimeout(() => {
        fail(`timed out after ${opts.timeoutMs} ms`);
        r();
      }, opts.timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  const ms = Math.round(performance.now() - started);
  return {
    count: opts.count,
    replies,
    errors,
    errorSamples,
    ms,
    rate: Math.round(replies / (ms / 1000)),
  };
}

if (import.meta.main) {
  const { values: v } = parseArgs({
    args: Deno.args,
    options: {
      ports: { type: "string" },
      count: { type: "string", default: "100000" },
      prefix: { type: "string", default: "c" },
      "connections-per-port": { type: "string", default: "1" },
      window: { type: "string", default: "2048" },
      "timeout-ms": { type: "string", default: "600000" },
    },
  });
  if (!v.ports) {
    console.error("usage: bulk.ts --ports P[,P...] [--count N] [--prefix S] [--window W]");
    Deno.exit(2);
  }
  const result = await bulkLoad({
    ports: v.ports.split(",").map(Number),
    count: Number(v.count),
    prefix: v.prefix,
    connectionsPerPort: Math.max(1, Number(v["connections-per-port"])),
    window: Math.max(1, Number(v.window)),
    timeoutMs: Number(v["timeout-ms"]),
  });
  console.log(JSON.stringify(result));
  Deno.exit(0);
}
