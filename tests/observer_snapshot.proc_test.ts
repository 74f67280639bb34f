/**
 * A remote dashboard on a herd holding big records. The first observer
 * snapshot of 200 records of 30 KB is over the 4 MiB observer buffer: it used to close the
 * observer synchronously inside `startObserver`, whose callback read `observer` before it was
 * assigned, and the unhandled rejection ended every server process (again after each restart,
 * since the records reload from disk). Now the snapshot streams in bounded chunks.
 */

import assert from "node:assert/strict";
import { freePorts, waitFor } from "./_helpers/net.ts";
import { ProcessHerd, PROCS_SECRET } from "./_helpers/procs.ts";
import { exchange } from "./_helpers/net.ts";
import { spawnDashboard } from "./_helpers/task_flags.ts";
import { DISPLAY_MAX } from "../servers/events.ts";

const RECORDS = 200;
const DIGITS = 30_000;

Deno.test("observer: `deno task dashboard` on five server processes holding 200 records of 30 KB", async () => {
  const herd = await ProcessHerd.create();
  const [web] = freePorts(1);
  let dash: Deno.ChildProcess | undefined;
  let dashErr = "";
  try {
    await herd.startAll();
    await herd.waitLinksUp();
    const now = Math.floor(Date.now() / 1000);
    const lines: string[] = [];
    for (let i = 0; i < RECORDS; i++) {
      // A valid location of 30 KB: a latitude with 30,000 fraction digits.
      const loc = `+34.${String(i).padStart(3, "0")}${"7".repeat(DIGITS)}-118.445127`;
      lines.push(`IAMAT big.${i} ${loc} ${now}.${i}\n`);
    }
    const replies = await exchange(herd.port("Hill"), lines.join(""), 60_000);
    assert.deepEqual(replies.split("\n").filter((l) => l.startsWith("AT Hill ")).length, RECORDS);

    dash = spawnDashboard(herd.configPath, web, { HERD_SECRET: PROCS_SECRET }, "null");
    const errDone = (async () => {
      const d = new TextDecoder();
      for await (const chunk of dash!.stderr) dashErr += d.decode(chunk, { stream: true });
    })();
    let last = "";
    await waitFor(
      async () => {
        try {
          const res = await fetch(`http://127.0.0.1:${web}/api/state`);
          const state = await res.json();
          last = JSON.stringify(
            state.servers.map((s: { name: string; running: boolean; records: number }) =>
              `${s.name}:${s.running}:${s.records}`
            ),
          ) + ` records=${state.records.length}`;
          return state.servers.every((s: { running: boolean; records: number }) =>
            s.running && s.records === RECORDS
          ) && state.records.length === RECORDS;
        } catch {
          return false;
        }
      },
      60_000,
      "the dashboard to show every server running with the 200 records",
    ).catch((err) => {
      throw new Error(`${err.message}; last: ${last}; dashboard stderr: ${dashErr}`);
    });
    const state = await (await fetch(`http://127.0.0.1:${web}/api/state`)).json();
    // The page shows 300 bytes of each and how many more (displayClip): the count says the
    // dashboard got the whole location over the observer link.
    const locations = new Set<number>(
      state.records.map((r: { location: string }) => {
        const more = /… \(\+(\d+) bytes\)$/.exec(r.location);
        return more === null ? r.location.length : DISPLAY_MAX + Number(more[1]);
      }),
    );
    assert.ok([...locations].every((n) => n > DIGITS), "the records arrive whole");
    herd.assertHealthy();
    // And they keep serving.
    assert.ok(
      (await exchange(herd.port("Campbell"), `IAMAT after +1+1 ${now}\n`)).startsWith("AT "),
    );
    dash.kill("SIGKILL");
    await dash.status;
    await errDone;
    assert.ok(!dashErr.includes("Uncaught"), dashErr);
    dash = undefined;
  } finally {
    if (dash) {
      dash.kill("SIGKILL");
      await dash.status;
    }
    await herd.close();
  }
});
