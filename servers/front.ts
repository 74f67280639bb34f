/**
 * PROTOTYPE (branch `threads`, reverted in the next commit): the herd thread's side of
 * front_worker.ts, `HERD_FRONT=1 main.ts start`. Each batch's commands go to
 * `HerdServer.handleLine` with a stand-in connection carrying the worker's receive time; the
 * replies are posted back once the batch's last one settles (a 0 ms timer otherwise).
 * `HERD_FRONT_STATS=1` prints batches, posts and commands every 2 s.
 *
 * @module
 */
import type { Herd } from "./herd.ts";
import type { HerdServer } from "./server.ts";
import type { ClientConnection } from "./connection.ts";

export async function startFront(herd: Herd, opts: unknown): Promise<Worker> {
  const servers: HerdServer[] = [...herd.servers.values()];
  const w = new Worker(new URL("./front_worker.ts", import.meta.url).href, { type: "module" });
  const proxies = new Map<
    number,
    { id: number; ns: bigint; receivedNs(): bigint; remote: string }
  >();
  let out: unknown[] = [];
  let outstanding = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let batches = 0, posts = 0, cmds = 0, viaTimer = 0;
  const post = () => {
    if (timer !== undefined) clearTimeout(timer), timer = undefined;
    if (out.length === 0) return;
    posts++;
    w.postMessage({ t: "replies", b: out });
    out = [];
  };
  const done = (req: number, text: string) => {
    out.push(req, text);
    if (--outstanding === 0) post();
    else if (timer === undefined) timer = setTimeout(() => (viaTimer++, post()), 0);
  };
  w.onmessage = (e) => {
    const m = e.data;
    if (m.t !== "cmds") return;
    batches++;
    const b = m.b as unknown[];
    for (let i = 0; i < b.length; i += 6) {
      cmds++;
      const server = servers[b[i] as number];
      const connId = b[i + 1] as number;
      let p = proxies.get(connId);
      if (p === undefined) {
        p = {
          id: connId,
          ns: 0n,
          receivedNs() {
            return this.ns;
          },
          remote: "front",
        };
        proxies.set(connId, p);
      }
      p.ns = b[i + 5] as bigint;
      const req = b[i + 2] as number;
      outstanding++;
      const r = server.handleLine(
        { text: b[i + 3] as string, overlong: b[i + 4] as boolean },
        p as unknown as ClientConnection,
      );
      if (r === null) done(req, "");
      else if (typeof r === "string") done(req, r);
      else r.then((t) => done(req, t));
    }
  };
  if (Deno.env.get("HERD_FRONT_STATS")) {
    setInterval(
      () =>
        console.error(
          `front: batches ${batches} posts ${posts} viaTimer ${viaTimer} cmds ${cmds} outstanding ${outstanding}`,
        ),
      2000,
    );
  }
  await new Promise<void>((resolve) => {
    const first = w.onmessage!;
    w.onmessage = (e) => {
      if (e.data.t === "ready") {
        w.onmessage = first;
        resolve();
      }
    };
    w.postMessage({
      t: "start",
      opts,
      ports: servers.map((s) => ({ host: s.host, port: s.port })),
    });
  });
  return w;
}
