/**
 * The test tiers: every test file belongs to exactly one, named by its suffix, and the suffix says
 * what the file touches, so `deno task test:unit` (and :net, :proc, :browser) each run alone and
 * `deno task test` runs every test once.
 *
 * - `*.unit_test.ts`: modules in this process; no sockets, no child processes (temp files are fine).
 * - `*.net_test.ts`: loopback sockets in this process (in-process herds, fake Google, HTTP).
 * - `*.proc_test.ts`: real child processes (server processes, kill -9, the CLI, openssl, ...).
 * - `*.browser_test.ts`: Chromium.
 *
 * A file's tier is the heaviest thing any of its tests touches.
 */

import assert from "node:assert/strict";

const TIERS = ["unit", "net", "proc", "browser"] as const;
type Tier = typeof TIERS[number];

/** What puts a file in a tier, heaviest first: the first that matches decides. */
const TOUCHES: [Tier, string, RegExp][] = [
  ["browser", "drives Chromium", /_helpers\/browser\.ts"|from "(npm:)?playwright(-core)?[@"]/],
  ["proc", "starts child processes", /\bDeno\.Command\b|_helpers\/(procs|netns|deno_info)\.ts"/],
  [
    "net",
    "opens sockets",
    /\bDeno\.(connect|listen|serve|connectTls|listenTls|startTls)\b|_helpers\/(net|fake_google|proxy|http_raw)\.ts"|\bserveDashboard\(|\bnew Herd\(|\bHerd\.start\b|\bfetch\(/,
  ],
];

const testsDir = new URL("./", import.meta.url);
/** What `deno test` collects from a folder (its default pattern). */
const TEST_FILE = /(^|[._])test\.(ts|tsx|mts|js|jsx|mjs)$/;

async function collected(dir: URL, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) out.push(...await collected(new URL(`${e.name}/`, dir), `${rel}${e.name}/`));
    else if (TEST_FILE.test(e.name)) out.push(`${rel}${e.name}`);
  }
  return out.sort();
}

function tiersOf(file: string): Tier[] {
  const parts = file.split("/").at(-1)!.replace(/_test\.ts$/, "").split(".");
  return TIERS.filter((t) => parts.slice(1).includes(t));
}

Deno.test("tiers: every test file is in exactly one tier, at the top of tests/", async () => {
  const files = await collected(testsDir);
  assert.ok(files.length > 20, `only ${files.length} test files found`);
  const wrong = files.filter((f) =>
    f.includes("/") || tiersOf(f).length !== 1 ||
    !/^[a-z0-9_]+\.(unit|net|proc|browser)_test\.ts$/.test(f)
  );
  assert.deepEqual(
    wrong,
    [],
    "each test file is tests/<module>.<tier>_test.ts with one tier of unit, net, proc, browser",
  );
});

Deno.test("tiers: each file's tier is what its tests touch", async () => {
  const wrong: string[] = [];
  for (const file of await collected(testsDir)) {
    const [declared] = tiersOf(file);
    if (!declared) continue; // the test above names it
    const src = await Deno.readTextFile(new URL(file, testsDir));
    const [touched, what] = TOUCHES.find(([, , re]) => re.test(src)) ?? ["unit", "touches no I/O"];
    if (touched !== declared) wrong.push(`${file} ${what}: its tier is ${touched}`);
  }
  assert.deepEqual(wrong, []);
});

Deno.test("tiers: deno.json runs each tier alone, and `test` runs the whole folder once", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", testsDir)));
  const tasks: Record<string, string> = config.tasks;
  const runs = (task: string) => {
    const cmd = tasks[task];
    assert.ok(cmd !== undefined, `deno.json has no task ${task}`);
    const test = cmd.split("&&").map((s) => s.trim()).filter((s) => s.startsWith("deno test "));
    assert.deepEqual(test.length, 1, `${task}: one deno test command`);
    return test[0].split(/\s+/).filter((a) => a.startsWith("tests/"));
  };
  assert.deepEqual(runs("test"), ["tests/"]);
  for (const tier of TIERS) assert.deepEqual(runs(`test:${tier}`), [`tests/*.${tier}_test.ts`]);
});
