/**
 * PROTOTYPE (branch `threads`, reverted in the next commit; BENCHMARKS.md "Threads of
 * 2026-11-27"): the client ports of `start` on a Worker thread. Listens on every server's client
 * port, runs the usual ClientConnection (read loop, lines, ordered replies, backpressure) and
 * posts each turn's commands to the herd's thread in one message (server, connection, request,
 * line, overlong, receive time); the replies come back in batches. No handshakes, no
 * connect/disconnect events, no per-server stop: enough to measure, not to ship.
 *
 * @module
 */
import { ClientConnection, type LineHandler } from "./connection.ts";
import type { SplitLine } from "./lines.ts";
import { setImmediate } from "node:timers";

interface Port {
  host: string;
  port: number;
}
// deno-lint-ignore no-explicit-any
const self_ = self as any;
let batch: unknown[] = [];
let scheduled = false;
let nextReq = 1;
const waiting = new Map<number, (text: string) => void>();
let opts: ConstructorParameters<typeof ClientConnection>[3];

function flush() {
  scheduled = false;
  if (batch.length === 0) return;
  const b = batch;
  batch = [];
  self_.postMessage({ t: "cmds", b });
}

function handlerFor(server: number): LineHandler {
  return {
    handleLine(line: SplitLine, conn: ClientConnection) {
      const req = nextReq++;
      batch.push(server, conn.id, req, line.text, line.overlong, conn.receivedNs());
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
      return new Promise<string>((resolve) => waiting.set(req, resolve));
    },
    handshake() {
      return Promise.resolve(false);
    },
  };
}

let nextConn = 1;
async function serve(listener: Deno.Listener, server: number) {
  const handler = handlerFor(server);
  for await (const conn of listener) {
    try {
      (conn as Deno.TcpConn).setNoDelay(true);
    } catch { /* */ }
    const c = new ClientConnection(conn, nextConn++, handler, opts);
    c.run().catch(() => {});
  }
}

self_.onmessage = (e: MessageEvent) => {
  const m = e.data;
  if (m.t === "start") {
    opts = m.opts;
    (m.ports as Port[]).forEach((p, i) =>
      serve(Deno.listen({ hostname: p.host, port: p.port }), i)
    );
    self_.postMessage({ t: "ready" });
  } else if (m.t === "replies") {
    const b = m.b as unknown[];
    for (let i = 0; i < b.length; i += 2) {
      const req = b[i] as number;
      const r = waiting.get(req)!;
      waiting.delete(req);
      r(b[i + 1] as string);
    }
  }
};
