/**
 * The last resort (cli/last_resort.ts), in real processes: an exception nothing caught (a timer's
 * callback, an abort listener, a rejected promise nobody awaits) costs one line on stderr with
 * "Uncaught" in it (so tests still fail on it), no secret and no stack, and the process goes on;
 * a burst is bounded. (main.ts ends a start-up that failed itself: rethrown, it would be such a
 * rejection; no start-up error is known to reach it, so that was checked by hand.)
 */

import assert from "node:assert/strict";
import { outputText } from "./_helpers/procs.ts";

const SECRET = "last-resort-secret-0123456789";
const KEY = "last-resort-places-key-42";

/** Runs a script that installs the last resort, then `body`; returns its exit code and output. */
async function runGuarded(body: string, env: Record<string, string> = {}) {
  const dir = await Deno.makeTempDir({ prefix: "last_resort_test_" });
  try {
    const script = `${dir}/guarded.ts`;
    const module = new URL("../cli/last_resort.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { keepRunningOnUncaught, uncaughtSoFar } from ${JSON.stringify(module)};\n` +
        `keepRunningOnUncaught();\n${body}\n`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-env=HERD_SECRET,GOOGLE_PLACES_API_KEY", "--no-prompt", script],
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    return outputText(out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("last resort: a throwing timer, abort listener and a lost rejection cost one line each", async () => {
  const r = await runGuarded(
    `
    setTimeout(() => { throw new TypeError("timer bug"); }, 0);
    const stop = new AbortController();
    stop.signal.addEventListener("abort", () => { throw new RangeError("abort listener bug"); });
    setTimeout(() => stop.abort(), 20);
    Promise.reject(new Error("lost rejection\\nsecond line ${SECRET}"));
    setTimeout(() => {
      throw new Error("GET https://maps.example/x?location=1,2&key=${KEY}&radius=5 failed");
    }, 40);
    setTimeout(() => { throw new Error("token ${"ab12".repeat(16)} leaked"); }, 50);
    setTimeout(() => console.log("still running", uncaughtSoFar()), 200);
    `,
    { HERD_SECRET: SECRET, GOOGLE_PLACES_API_KEY: KEY },
  );
  // Before: the first of them ended the process (exit 1, a stack trace, "still running" never).
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "still running 5\n", "five survived, five counted (/healthz says so)");
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 5, r.stderr);
  for (const l of lines) {
    assert.match(l, /^Uncaught /);
    assert.match(l, /a bug, caught at the last resort; the process goes on$/);
  }
  const text = r.stderr;
  assert.match(text, /Uncaught TypeError: timer bug \[at file:\/\/\S+guarded\.ts:\d+:\d+\]/);
  assert.match(text, /Uncaught RangeError: abort listener bug/);
  assert.match(text, /Uncaught \(in promise\) Error: lost rejection \[at /);
  assert.ok(!text.includes("second line"), "one line: the message's first");
  assert.ok(!text.includes(SECRET) && !text.includes(KEY), text);
  assert.ok(!text.includes("ab12ab12"), "a hex token is redacted");
  assert.match(text, /key=\[redacted\]/);
});

Deno.test("last resort: a bug that fires on every tick is said in a bounded burst, then counted", async () => {
  const r = await runGuarded(
    `
    let n = 0;
    const t = setInterval(() => {
      if (++n === 200) { clearInterval(t); return; }
      throw new Error("tick bug " + n);
    }, 1);
    `,
  );
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stderr.trim().split("\n");
  assert.ok(lines.length <= 10, `${lines.length} lines for 199 errors`);
  assert.match(lines[0], /tick bug 1/);
});
