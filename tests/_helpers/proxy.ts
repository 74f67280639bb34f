/**
 * A recording TCP proxy on loopback: what an attacker on the path between two servers sees.
 * Every connection to the proxy is forwarded to the target; the bytes each side sent are kept.
 *
 * @module
 */

import { bytesToBinary } from "../../servers/lines.ts";

/** One forwarded connection's bytes, as binary strings. */
export interface Recorded {
  /** What the dialling side sent. */
  fromClient: string;
  /** What the accepting side sent back. */
  fromServer: string;
}

/**
 * Forwards `port` → `127.0.0.1:target` and records each connection.
 *
 * @example
 * ```ts
 * const target = 12001; // the server's port
 * const proxy = RecordingProxy.start(target);
 * // ... a server dials proxy.port ...
 * proxy.sessions[0].fromClient; // "HERD2 HELLO ...\nHERD2 PROOF ...\n..."
 * await proxy.close();
 * ```
 */
export class RecordingProxy {
  readonly port: number;
  readonly sessions: Recorded[] = [];
  #listener: Deno.Listener;
  #conns = new Set<Deno.Conn>();
  #tasks = new Set<Promise<void>>();
  #accepting: Promise<void>;

  private constructor(listener: Deno.Listener, target: number) {
    this.#listener = listener;
    this.port = (listener.addr as Deno.NetAddr).port;
    this.#accepting = this.#accept(target);
  }

  /** Listens on `port` (0: any free port). */
  static start(target: number, port = 0): RecordingProxy {
    return new RecordingProxy(Deno.listen({ hostname: "127.0.0.1", port }), target);
  }

  async #accept(target: number): Promise<void> {
    try {
      for await (const inbound of this.#listener) {
        const task = this.#forward(inbound, target);
        this.#tasks.add(task);
        task.finally(() => this.#tasks.delete(task));
      }
    } catch {
      // closed
    }
  }

  async #forward(inbound: Deno.Conn, target: number): Promise<void> {
    let outbound: Deno.Conn;
    try {
      outbound = await Deno.connect({ hostname: "127.0.0.1", port: target });
    } catch {
      inbound.close();
      return;
    }
    const rec: Recorded = { fromClient: "", fromServer: "" };
    this.sessions.push(rec);
    this.#conns.add(inbound);
    this.#conns.add(outbound);
    const pipe = async (from: Deno.Conn, to: Deno.Conn, key: keyof Recorded) => {
      const buf = new Uint8Array(64 * 1024);
      try {
        for (;;) {
          const n = await from.read(buf);
          if (n === null) break;
          const chunk = buf.subarray(0, n);
          rec[key] += bytesToBinary(chunk);
          let off = 0;
          while (off < n) off += await to.write(chunk.subarray(off));
        }
      } catch {
        // reset or closed
      }
      for (const c of [from, to]) {
        try {
          c.close();
        } catch {
          // already closed
        }
        this.#conns.delete(c);
      }
    };
    await Promise.all([
      pipe(inbound, outbound, "fromClient"),
      pipe(outbound, inbound, "fromServer"),
    ]);
  }

  /** Stops listening and cuts every forwarded connection. */
  async close(): Promise<void> {
    this.#listener.close();
    for (const c of this.#conns) {
      try {
        c.close();
      } catch {
        // already closed
      }
    }
    await this.#accepting;
    await Promise.allSettled([...this.#tasks]);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
