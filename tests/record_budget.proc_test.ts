/**
 * The record budget against real processes: a server whose records would outgrow its JS heap
 * refuses new clients with `?` instead of dying. Before the budget, one client that sent ~65,000
 * distinct IAMATs with 60 KiB locations (any client may: the line limit is 64 KiB) took a `server`
 * to V8's heap limit, and "Fatal JavaScript out of memory" ended it; its neighbours, which hold
 * every record too, followed. Here the heap is made small (128 MiB) so the same happens in seconds.
 */

import assert from "node:assert/strict";
import { ProcessHerd, whatsat } from "./_helpers/procs.ts";

const SMALL_HEAP = { DENO_V8_FLAGS: "--max-old-space-size=128" };
/** A location of ~60 KiB: ISO 6709 allows any number of decimals. */
const FAT = "+34." + "0".repeat(60_000) + "-118.5";
/** More than a 128 MiB heap can hold at 60 KiB each. */
const MAX_SENT = 8_000;
const WINDOW = 32;

/** Reads one reply line's first bytes (the rest of a long echo is skipped). */
class Replies {
  #conn: Deno.TcpConn;
  #buf = new Uint8Array(256 * 1024);
  #start = 0;
  #end = 0;
  constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }
  /** The next line's first 40 chars, or undefined at EOF. */
  async next(): Promise<string | undefined> {
    let head: string | undefined;
    for (;;) {
      const chunk = this.#buf.subarray(this.#start, this.#end);
      const nl = chunk.indexOf(10);
      head ??= chunk.length > 0 ? new TextDecoder().decode(chunk.subarray(0, 40)) : undefined;
      if (nl >= 0) {
        this.#start += nl + 1;
        return head!.split("\n")[0];
      }
      this.#start = this.#end = 0;
      const n = await this.#conn.read(this.#buf);
      if (n === null) return undefined;
      this.#end = n;
    }
  }
}

Deno.test("record budget: a server about to fill its heap with records answers new clients ? and keeps serving (and its neighbour too)", async () => {
  const herd = await ProcessHerd.create({
    topology: { Hill: ["Jaquez"], Jaquez: ["Hill"] },
    env: () => SMALL_HEAP,
    args: () => ["--memory"],
  });
  try {
    await herd.startAll();
    const conn = await Deno.connect({ port: herd.port("Hill") });
    const replies = new Replies(conn);
    const enc = new TextEncoder();
    let accepted = 0;
    let refused: string | undefined;
    // In windows of 32 (each reply waits for the neighbour's receipt: one at a time is slow).
    for (let sent = 0; sent < MAX_SENT && refused === undefined; sent += WINDOW) {
      const lines = [];
      for (let i = sent; i < sent + WINDOW; i++) {
        lines.push(`IAMAT fat${i} ${FAT} ${Date.now() / 1000}\n`);
      }
      await conn.write(enc.encode(lines.join("")));
      for (let i = 0; i < WINDOW; i++) {
        const reply = await replies.next();
        assert.ok(reply !== undefined, `Hill closed the connection after ${accepted} IAMATs`);
        if (reply.startsWith("AT ") && refused === undefined) accepted++;
        else refused ??= reply;
      }
    }
    assert.ok(refused !== undefined, `all ${MAX_SENT} fat records accepted`);
    assert.match(refused, /^\? IAMAT fat\d+ /);
    assert.ok(accepted > 500, `only ${accepted} accepted before the budget`);
    // A known client still updates; both servers still answer.
    await conn.write(enc.encode(`IAMAT fat0 +1+1 ${Date.now() / 1000}\n`));
    assert.match((await replies.next())!, /^AT Hill \S+ fat0 \+1\+1 /);
    conn.close();
    assert.ok(herd.running("Hill") && herd.running("Jaquez"));
    // The neighbour holds what Hill accepted (it takes peers' records up to the margin).
    const last = `fat${accepted - 1}`;
    assert.match(
      (await whatsat(herd.port("Jaquez"), last)) ?? "",
      new RegExp(`^AT Hill \\S+ ${last} `),
    );
    const log = await Deno.readTextFile(`${herd.logDir}/Hill.log`);
    assert.match(log, /ERROR records-full: record budget of [\d.]+ MiB reached/);
  } finally {
    await herd.close();
  }
});
