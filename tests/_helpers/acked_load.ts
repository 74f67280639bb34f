/**
 * Load for the kill tests: clients that each send one IAMAT at a time on a connection
 * of their own (a new client ID per IAMAT), reconnect when the server is gone, and remember every
 * acknowledged record; and a chunked WHATSAT of many clients.
 *
 * @module
 */

import { TcpClient } from "./net.ts";
import { whatsatMany } from "./procs.ts";

/** Running load: the acknowledged AT line per client, and how to stop it. */
export interface Load {
  acked: Map<string, string>;
  stop(): Promise<void>;
}

/** `workers` clients sending IAMATs to `hostOf(worker):portOf(worker)` with client IDs `<prefix>.<w>.<n>`. */
export function startLoad(
  portOf: (w: number) => number,
  prefix: string,
  workers = 8,
  hostOf: (w: number) => string = () => "127.0.0.1",
): Load {
  const acked = new Map<string, string>();
  let stopped = false;
  let n = 0;
  const worker = async (w: number) => {
    while (!stopped) {
      let c: TcpClient | undefined;
      try {
        c = await TcpClient.connect(portOf(w), hostOf(w));
        for (let k = 0; k < 200 && !stopped; k++) {
          const client = `${prefix}.${w}.${n++}`;
          await c.send(`IAMAT ${client} +1.5-2.5 1700000000.${w}\n`);
          // replies() returns all replies so far on this connection: this IAMAT's is the k-th.
          const reply = (await c.replies(k + 1, 5000))[k];
          if (reply?.startsWith("AT ")) acked.set(client, reply.slice(0, -1));
        }
      } catch {
        await new Promise((r) => setTimeout(r, 10)); // the server is gone: retry, as clients do
      } finally {
        await c?.close().catch(() => {});
      }
    }
  };
  const running = Array.from({ length: workers }, (_, w) => worker(w));
  return {
    acked,
    async stop() {
      stopped = true;
      await Promise.all(running);
    },
  };
}

/** What a server answers for each client (`WHATSAT c 10 0` in chunks; undefined for `?`). */
export async function askAll(
  port: number,
  clients: readonly string[],
  chunk = 500,
): Promise<Map<string, string | undefined>> {
  const out = new Map<string, string | undefined>();
  for (let i = 0; i < clients.length; i += chunk) {
    for (const [c, at] of await whatsatMany(port, clients.slice(i, i + chunk), 30_000)) {
      out.set(c, at);
    }
  }
  return out;
}
