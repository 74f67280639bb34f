/**
 * The servers of one process share record bodies (servers/record_table.ts) over real sockets:
 * a flooded record is held once by all five, and a restarted server lets go of its old copies.
 */
import assert from "node:assert/strict";
import { formatAt } from "../servers/protocol.ts";
import { clientTime, exchange, startSeedHerd, waitFor } from "./_helpers/net.ts";
import { ClientIndex } from "../dashboard/client_index.ts";

Deno.test("record table: the five servers of a herd hold one body per record; a restarted server lets go of its copies", async () => {
  await using t = await startSeedHerd();
  const { herd } = t;
  const names = [...herd.servers.keys()];
  const clients = ["kiwi.example.com", "mango.example.com"];
  // The dashboard's index of every client keeps the shared body too, not a store's view of it.
  const index = new ClientIndex(herd);
  for (const [i, client] of clients.entries()) {
    const reply = await exchange(
      t.port(names[i]),
      `IAMAT ${client} +34.068930-118.445127 ${clientTime()}\n`,
    );
    assert.match(reply, /^AT /);
  }
  const everywhere = () =>
    clients.every((c) => names.every((n) => herd.servers.get(n)!.store.get(c) !== undefined));
  await waitFor(everywhere, 10_000, "both records on all five servers");
  for (const c of clients) {
    assert.equal(herd.records.listed(c)!.refs, 5);
    const lines = names.map((n) => formatAt(herd.servers.get(n)!.store.get(c)!));
    assert.equal(new Set(lines).size, 1);
  }
  assert.equal(herd.records.size, 2);
  for (const c of clients) assert.equal(index.get(c), herd.records.listed(c));
  index.close();

  // Campbell restarts from nothing (--memory) and catches up: its old store's holds are gone,
  // its new store's are the only ones it adds.
  await herd.stopServer("Campbell");
  await herd.startServer("Campbell");
  await waitFor(everywhere, 10_000, "Campbell caught up");
  for (const c of clients) assert.equal(herd.records.listed(c)!.refs, 5);
  assert.equal(herd.records.size, 2);
});
