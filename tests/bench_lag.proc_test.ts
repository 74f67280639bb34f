/**
 * bench/lag.js, the event-loop lag sampler preloaded into a program: it notes a stall of the
 * program's thread with its wall time, and it never keeps the program alive.
 */

import assert from "node:assert/strict";

const LAG_JS = new URL("../bench/lag.js", import.meta.url).pathname;

Deno.test("bench lag.js: a 150 ms synchronous step is noted at its time; the program still ends", async () => {
  const dir = await Deno.makeTempDir({ prefix: "herd-lag-" });
  try {
    const out = `${dir}/lag.txt`;
    // After 300 ms (the sampler is running by then), hold the thread for 150 ms; then wait 1.5 s
    // so the sampler's once-a-second write has happened, and end with no handle left open.
    await Deno.writeTextFile(
      `${dir}/busy.js`,
      `setTimeout(() => {
         const from = Date.now();
         while (Date.now() - from < 150) { /* hold the thread */ }
         console.log(from);
       }, 300);
       setTimeout(() => {}, 1800);`,
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-read",
        "--allow-write",
        "--allow-env",
        "--preload",
        LAG_JS,
        `${dir}/busy.js`,
      ],
      env: { LAG_OUT: out, LAG_MS: "20" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const deadline = setTimeout(() => child.kill("SIGKILL"), 20_000);
    const r = await child.output();
    clearTimeout(deadline);
    assert.deepEqual(
      r.code,
      0,
      `exit ${r.code} (killed at 20 s?): ${new TextDecoder().decode(r.stderr)}`,
    );
    const blockedAt = Number(new TextDecoder().decode(r.stdout).trim());
    const lines = (await Deno.readTextFile(out)).trim().split("\n");
    assert.match(lines[0], /^ORIGIN \d+(\.\d+)?$/);
    const lags = lines.slice(1).map((l) => {
      const m = /^LAG (\d+\.\d{3}) (\d+\.\d{3})$/.exec(l);
      assert.ok(m, `bad line ${JSON.stringify(l)}`);
      return { at: Number(m[1]), ms: Number(m[2]) };
    });
    // The gap that holds the step: begins before it, lasts at least as long, ends after it.
    const step = lags.find((g) => g.at <= blockedAt + 1 && g.at + g.ms >= blockedAt + 150);
    assert.ok(step, `no gap covering the step at ${blockedAt}: ${JSON.stringify(lags)}`);
    assert.ok(step.ms >= 149, `gap ${step.ms} ms`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
