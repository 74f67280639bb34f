/**
 * Found by an adversarial review (adv10b #2): a second process serving the same name (another data dir and client port: a
 * student's stray copy, a second config) beside the real one. The data-dir lock cannot see it
 * (another dir). Both dial the neighbour, each new link replaces the other, and each SYNC comes
 * with the other epoch, so the neighbour sends its whole log every time: ~30 flaps a second,
 * each a full resend, for as long as both run. Expected: a clean degrade (the neighbour keeps
 * one of them and refuses the other with one error line, or backs off), not a storm.
 */

import assert from "node:assert/strict";
import { ProcessHerd } from "./_helpers/procs.ts";
import { exchange } from "./_helpers/net.ts";
import { leasePorts } from "./_helpers/ports.ts";

const RECORDS = 20_000;

Deno.test("two processes serving Ant (other data dir, other port): Bee does not flap between them", async () => {
  const topology = { Ant: ["Bee"], Bee: ["Ant"] };
  const herd = await ProcessHerd.create({ topology });
  const twinHerd = await ProcessHerd.create({ topology });
  try {
    await herd.startAll();
    await herd.waitLinksUp();
    const lines = Array.from({ length: RECORDS }, (_, k) => `IAMAT t.${k} +1+1 1700000000.${k}\n`);
    const replies = await exchange(herd.port("Bee"), lines.join(""), 60_000);
    assert.equal(replies.split("\n").filter((l) => l.startsWith("AT ")).length, RECORDS);
    // The twin: the same herd config but Ant's client port moved (a second config file).
    const [twinPort] = leasePorts(1);
    const cfg = JSON.parse(await Deno.readTextFile(herd.configPath));
    cfg.servers.Ant.port = twinPort;
    const twinCfg = `${herd.dir}/twin.json`;
    await Deno.writeTextFile(twinCfg, JSON.stringify(cfg));
    const from = (await herd.log("Bee")).length;
    const cpu0 = await cpuMs(herd.procs.get("Bee")!.pid);
    const twin = await twinHerd.spawn("Ant", [], twinCfg);
    await twin.waitListening();
    await new Promise((r) => setTimeout(r, 10_000));
    const beeLog = (await herd.log("Bee")).slice(from);
    const cpu = (await cpuMs(herd.procs.get("Bee")!.pid)) - cpu0;
    const ups = (beeLog.match(/ LINK UP Ant/g) ?? []).length;
    const sent = [...beeLog.matchAll(/ SYNC Ant sent (\d+) /g)].reduce(
      (a, m) => a + Number(m[1]),
      0,
    );
    console.log(
      `  in 10 s with two Ants: Bee linked Ant ${ups} times, resent ${sent} records, ${cpu} ms CPU, ${beeLog.length} log bytes`,
    );
    assert.match(beeLog, /ERROR peer-conflict: connections from Ant keep replacing a live one/);
    assert.ok(
      ups <= 3,
      `Bee linked "Ant" ${ups} times in 10 s (resent ${sent} records, ${cpu} ms CPU)`,
    );
  } finally {
    await twinHerd.close();
    await herd.close();
  }
});

/** CPU time (user + system) of a process in ms, from /proc (clock ticks of 10 ms). */
async function cpuMs(pid: number): Promise<number> {
  const stat = (await Deno.readTextFile(`/proc/${pid}/stat`)).split(") ")[1].split(" ");
  return (Number(stat[11]) + Number(stat[12])) * 10;
}
