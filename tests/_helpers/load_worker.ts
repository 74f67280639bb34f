/**
 * Clients of tests/load.proc_test.ts that keep their own clock: the timed normal client and the
 * kept-alive idle connections. They run on a Worker's thread because the test's own thread stalls
 * for hundreds of milliseconds at a time (reading and scanning a log of tens of MB, pushing
 * 16 MiB payloads); timed there, those stalls were counted as the server's latency (a "max 3.1 s"
 * on a loaded CI machine) and delayed the keep-alives until the server rightly closed idle
 * connections.
 *
 * One Worker plays one role, chosen by its first message; see {@linkcode LoadRequest}.
 */

import { TcpClient } from "./net.ts";
import { closeQuietly } from "../../servers/io.ts";

/** What the test asks of a load worker; each request is answered with one {@linkcode LoadReply}. */
export type LoadRequest =
  /** Start the normal client: an IAMAT + WHATSAT round trip every 20 ms. */
  | { op: "normal"; port: number }
  /** Stop it; the reply carries every round trip's latency, or the error that ended it. */
  | { op: "normal.stop" }
  /** Open `count` connections, 100 at a time, and keep them alive with a blank line every 500 ms. */
  | { op: "idle"; port: number; count: number }
  /** Are all still open, and has none been written to? */
  | { op: "idle.check" }
  /** Stop the keep-alives and wait up to `waitMs` for the server to close them all. */
  | { op: "idle.stop"; waitMs: number };

/** A load worker's answer to the request of the same `op`. */
export type LoadReply =
  /** A request that failed (a connect refused, say). */
  | { op: "error"; message: string }
  | { op: "normal" }
  | { op: "normal.stop"; latencies: number[]; error?: string }
  | { op: "idle"; openMs: number }
  | {
    op: "idle.check";
    untouched: boolean;
    /** The longest time between two keep-alives so far (this thread's stalls, if any). */
    keepAliveGapMs: number;
  }
  | {
    op: "idle.stop";
    /** Still open after `waitMs`. */
    open: number;
    /** For the others, ms from the last keep-alive to their close, ascending. */
    closedAfter: number[];
  };

const encoder = new TextEncoder();
const BLANK = encoder.encode("\n");

// The normal client.
let stopNormal = false;
let normalLoop: Promise<void> = Promise.resolve();
let normalClient: TcpClient | undefined;
const latencies: number[] = [];
let normalError: string | undefined;

async function runNormal(client: TcpClient): Promise<void> {
  let answered = 0;
  for (let k = 0; !stopNormal; k++) {
    const t0 = performance.now();
    await client.send(
      `IAMAT load.normal +34.06-118.44 1700000000.${k}\nWHATSAT load.paris 10 3\n`,
    );
    const replies = await client.replies(answered + 2, 10_000);
    answered += 2;
    latencies.push(performance.now() - t0);
    const at = replies[answered - 2];
    if (!new RegExp(`^AT Solo \\S+ load\\.normal \\S+ 1700000000\\.${k}\\n$`).test(at)) {
      throw new Error(`IAMAT ${k} answered ${JSON.stringify(at)}`);
    }
    const near = replies[answered - 1];
    if (!/^AT Solo \S+ load\.paris [^\n]*\n\{[^]*\}\n\n$/.test(near)) {
      throw new Error(`WHATSAT ${k} answered ${JSON.stringify(near.slice(0, 200))}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

// The idle connections.
interface Watched {
  conn: Deno.TcpConn;
  received: number;
  closedAt: number | undefined;
  done: Promise<void>;
}
const idle: Watched[] = [];
let keepAlive: ReturnType<typeof setInterval> | undefined;
let lastKeepAlive = 0;
let keepAliveGap = 0;

function watch(conn: Deno.TcpConn): Watched {
  const w: Watched = { conn, received: 0, closedAt: undefined, done: Promise.resolve() };
  w.done = (async () => {
    const buf = new Uint8Array(256);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        w.received += n;
      }
    } catch {
      // reset, or closed by us
    }
    w.closedAt = performance.now();
  })();
  return w;
}

async function openIdle(port: number, count: number): Promise<number> {
  keepAlive = setInterval(() => {
    for (const w of idle) if (w.closedAt === undefined) w.conn.write(BLANK).catch(() => {});
    const now = performance.now();
    if (lastKeepAlive > 0) keepAliveGap = Math.max(keepAliveGap, now - lastKeepAlive);
    lastKeepAlive = now;
  }, 500);
  const t0 = performance.now();
  for (let i = 0; i < count; i += 100) {
    const batch = await Promise.all(
      Array.from(
        { length: Math.min(100, count - i) },
        () => Deno.connect({ hostname: "127.0.0.1", port }),
      ),
    );
    for (const conn of batch) idle.push(watch(conn));
  }
  return performance.now() - t0;
}

async function stopIdle(waitMs: number): Promise<LoadReply> {
  clearInterval(keepAlive);
  const idleFrom = lastKeepAlive;
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.all(idle.map((w) => w.done)),
    new Promise((r) => timer = setTimeout(r, waitMs)),
  ]);
  clearTimeout(timer);
  const open = idle.filter((w) => w.closedAt === undefined).length;
  const closedAfter = idle.filter((w) => w.closedAt !== undefined)
    .map((w) => w.closedAt! - idleFrom).sort((a, b) => a - b);
  for (const w of idle) closeQuietly(w.conn);
  await Promise.all(idle.map((w) => w.done));
  return { op: "idle.stop", open, closedAfter };
}

async function answer(req: LoadRequest): Promise<LoadReply> {
  switch (req.op) {
    case "normal":
      normalClient = await TcpClient.connect(req.port);
      normalLoop = runNormal(normalClient).catch((err) => {
        normalError = err instanceof Error ? err.message : String(err);
      });
      return { op: "normal" };
    case "normal.stop":
      stopNormal = true;
      await normalLoop;
      await normalClient?.close();
      return { op: "normal.stop", latencies, error: normalError };
    case "idle":
      return { op: "idle", openMs: await openIdle(req.port, req.count) };
    case "idle.check":
      return {
        op: "idle.check",
        untouched: idle.every((w) => w.closedAt === undefined && w.received === 0),
        keepAliveGapMs: keepAliveGap,
      };
    case "idle.stop":
      return await stopIdle(req.waitMs);
  }
}

/** The worker's side of messaging, typed here rather than by the worker lib, which would clash
 * with the window lib the rest of the tests are checked against. */
const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<LoadRequest>) => void) | null;
  postMessage(reply: LoadReply): void;
};

scope.onmessage = async (e) => {
  scope.postMessage(
    await answer(e.data).catch((err): LoadReply => ({
      op: "error",
      message: err instanceof Error ? err.message : String(err),
    })),
  );
};
