/**
 * Dashboard event-stream readers for the SSE-cost figure: opens `--count` concurrent
 * `GET /api/events` streams (what that many open dashboard tabs do) and keeps reading them as
 * fast as they come, counting bytes and SSE messages, without parsing the JSON.
 *
 *     deno run -A bench/sse_readers.ts --url http://127.0.0.1:8000/api/events --count 100 \
 *       [--max-ms 120000]
 *
 * Prints `READY <n>` once every stream has delivered its first bytes (the `hello` message), and
 * one JSON line of totals when it gets SIGTERM or `--max-ms` passes, then exits. Loopback only.
 *
 * @module
 */

import { parseArgs } from "node:util";

const NL = 0x0a;

/** Totals over all readers. */
export interface ReadersResult {
  readers: number;
  /** Streams still open at the end. */
  open: number;
  bytes: number;
  /** SSE messages (blank-line terminated blocks). */
  messages: number;
  /** Fewest and most bytes one reader got. */
  minBytes: number;
  maxBytes: number;
  errors: number;
  errorSamples: string[];
  seconds: number;
}

if (import.meta.main) {
  const { values: v } = parseArgs({
    args: Deno.args,
    options: {
      url: { type: "string" },
      count: { type: "string", default: "100" },
      "max-ms": { type: "string", default: "120000" },
    },
  });
  if (!v.url || !/^http:\/\/(127\.0\.0\.1|localhost)[:/]/.test(v.url)) {
    console.error("usage: sse_readers.ts --url http://127.0.0.1:PORT/api/events [--count N]");
    Deno.exit(2);
  }
  const count = Number(v.count);
  const started = performance.now();
  const abort = new AbortController();
  const bytes = new Array(count).fill(0);
  let messages = 0;
  let open = 0;
  let errors = 0;
  const errorSamples: string[] = [];
  let firstBytes = 0;
  let readyPrinted = false;

  const readOne = async (k: number) => {
    let prevNl = false;
    try {
      const res = await fetch(v.url!, {
        signal: abort.signal,
        headers: { accept: "text/event-stream" },
      });
      if (res.status !== 200 || !res.body) throw new Error(`HTTP ${res.status}`);
      open++;
      let first = true;
      for await (const chunk of res.body) {
        bytes[k] += chunk.length;
        // Blank-line ends of messages, found with native indexOf (this process shares the CPUs).
        if (prevNl && chunk[0] === NL) messages++;
        for (let i = chunk.indexOf(NL); i >= 0; i = chunk.indexOf(NL, i + 1)) {
          if (chunk[i + 1] === NL) messages++;
        }
        prevNl = chunk[chunk.length - 1] === NL;
        if (first) {
          first = false;
          if (++firstBytes === count && !readyPrinted) {
            readyPrinted = true;
            console.log(`READY ${count}`);
          }
        }
      }
      open--;
    } catch (e) {
      if (!abort.signal.aborted) {
        errors++;
        if (errorSamples.length < 5) errorSamples.push(String((e as Error).message));
      }
    }
  };

  const finish = () => {
    const result: ReadersResult = {
      readers: count,
      open,
      bytes: bytes.reduce((a, b) => a + b, 0),
      messages,
      minBytes: Math.min(...bytes),
      maxBytes: Math.max(...bytes),
      errors,
      errorSamples,
      seconds: Math.round((performance.now() - started) / 100) / 10,
    };
    console.log(JSON.stringify(result));
    abort.abort();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", finish);
  setTimeout(finish, Number(v["max-ms"]));
  for (let k = 0; k < count; k++) readOne(k);
}
