/**
 * cli/early_listen.ts over real sockets: before the herd accepts on the client port it opened
 * early, a neighbour's link-port question is answered there (so no neighbour holds a connection
 * to a starting server's client port), and every other connection reaches the herd's accepts in
 * the order it came, with the bytes read from it first.
 */

import assert from "node:assert/strict";
import { listenEarly } from "../cli/early_listen.ts";
import { freePorts } from "./_helpers/net.ts";

const dec = new TextDecoder();
const enc = new TextEncoder();

async function readSome(conn: Deno.Conn, ms = 5_000): Promise<string> {
  const buf = new Uint8Array(4096);
  const timer = setTimeout(() => conn.close(), ms);
  try {
    const n = await conn.read(buf);
    return n === null ? "" : dec.decode(buf.subarray(0, n));
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("early listen: link-port questions answered before the herd accepts; the rest handed over with their bytes", async () => {
  const [port, linkPort] = freePorts(2);
  const config = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(config, JSON.stringify({ servers: { B: { port, linkPort } } }));
  const early = await listenEarly(config, "B");
  assert.ok(early !== undefined);
  const opened: Deno.Conn[] = [];
  const dial = async (text: string) => {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    opened.push(c);
    if (text !== "") await c.write(enc.encode(text));
    return c;
  };
  try {
    const client1 = await dial("IAMAT early.one +1+1 1.5\n");
    const asker = await dial("HERD2 LINKPORT B\n");
    assert.deepEqual(await readSome(asker), `HERD2 LINKPORT B ${linkPort}\n`);
    assert.deepEqual(await readSome(asker), "", "the question's connection is closed after it");
    const other = await dial("HERD2 LINKPORT Z\n"); // not ours: the server's own `? ...`
    const silent = await dial("");
    // The server takes both listeners (before restoring its store), then accepts.
    const link = early.takeLink({ hostname: "127.0.0.1", port: linkPort });
    assert.ok(link !== undefined);
    const listener = early.take({ hostname: "127.0.0.1", port });
    assert.ok(listener !== undefined);
    // Still answered between the take and the first accept.
    const asker2 = await dial("HERD2 LINKPORT B\n");
    assert.deepEqual(await readSome(asker2), `HERD2 LINKPORT B ${linkPort}\n`);
    const got: string[] = [];
    for (let i = 0; i < 3; i++) {
      const conn = await listener.accept();
      opened.push(conn);
      got.push(i === 2 ? "(silent)" : await readSome(conn));
      if (i === 2) {
        await silent.write(enc.encode("late\n"));
        assert.deepEqual(await readSome(conn), "late\n", "the silent one reads on as usual");
      }
      await conn.write(enc.encode("ok\n"));
    }
    assert.deepEqual(got, ["IAMAT early.one +1+1 1.5\n", "HERD2 LINKPORT Z\n", "(silent)"]);
    assert.deepEqual(await readSome(client1), "ok\n", "writes reach the early client");
    assert.deepEqual(await readSome(other), "ok\n");
    // After the herd's first accept, a question waits for the herd, as on a ready server.
    const later = await dial("HERD2 LINKPORT B\n");
    const conn = await listener.accept();
    opened.push(conn);
    assert.deepEqual(await readSome(conn), "HERD2 LINKPORT B\n");
    void later;
    listener.close();
    link.close();
  } finally {
    for (const c of opened) {
      try {
        c.close();
      } catch {
        // closed already
      }
    }
    early.close();
    await Deno.remove(config);
  }
});
