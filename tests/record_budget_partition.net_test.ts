/**
 * Found by a review of this session's changes (review11 #6): RecordTable.fits now lets any known client's record no longer than its newest
 * one through unchecked (f5697a0, adv10a #3). docs/protocol.md says the process holds at most
 * --max-records-mib of records, "an older copy that a stopped or cut-off server still holds
 * included", and peers' records a quarter above it at most. With the servers of `start` cut off
 * from each other (or stopped, or just behind), each store keeps its own same-size body of every
 * client: the table counts them all, and the process holds several times the hard limit.
 */

import assert from "node:assert/strict";
import { startSeedHerd, TcpClient } from "./_helpers/net.ts";

const BUDGET = 1024 * 1024;
/** A location of ~20 KB. */
const BIG = "+34." + "1".repeat(20_000) + "-118.5";
const NAMES = ["Hill", "Jaquez", "Smith", "Campbell", "Singleton"];

async function ask(c: TcpClient, line: string, seen: number): Promise<string> {
  await c.send(line + "\n");
  return (await c.replies(seen + 1, 10_000))[seen];
}

Deno.test("record budget (start): servers cut off from each other cannot take the process past the hard limit with same-size updates", async () => {
  await using h = await startSeedHerd({ maxRecordBytes: BUDGET });
  const table = h.herd.records;
  const t = Math.floor(Date.now() / 1000) - 100;
  // Fill the budget through Hill, the flood reaching every store (one body each, shared).
  const known: string[] = [];
  {
    await using c = await TcpClient.connect(h.port("Hill"));
    for (let i = 0, n = 0; i < 200; i++) {
      const r = await ask(c, `IAMAT big${i} ${BIG} ${t}`, n++);
      if (!r.startsWith("AT ")) break;
      known.push(`big${i}`);
    }
  }
  assert.ok(known.length > 10 && table.bytes <= table.budget.soft, `${known.length} clients`);
  await new Promise((r) => setTimeout(r, 500));
  // Every link cut.
  for (const s of h.config.servers) {
    for (const n of s.neighbors) if (s.name < n) h.herd.setLink(s.name, n, { cut: true });
  }
  await new Promise((r) => setTimeout(r, 300));
  // Each server takes a same-size update of every known client (a newer time at each).
  let accepted = 0;
  for (const [k, name] of NAMES.entries()) {
    await using c = await TcpClient.connect(h.port(name));
    let n = 0;
    for (const client of known) {
      if ((await ask(c, `IAMAT ${client} ${BIG} ${t + 1 + k}`, n++)).startsWith("AT ")) accepted++;
    }
  }
  assert.ok(
    table.bytes <= table.budget.hard,
    `the process holds ${(table.bytes / 2 ** 20).toFixed(2)} MiB of records, the hard limit is ` +
      `${(table.budget.hard / 2 ** 20).toFixed(2)} MiB (${accepted} same-size updates accepted)`,
  );
});
