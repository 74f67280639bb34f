/**
 * Test processes running in parallel never get the same listening port from the helpers (a
 * clash made a server of one test file fail to bind, or worse, a test talk to another file's
 * server). Several processes pick ports at once, half through `freePorts` (in-process herds),
 * half through `stablePorts` (process herds).
 */

import assert from "node:assert/strict";

const PROCESSES = 4;
const PORTS_EACH = 150;

Deno.test("ports: parallel test processes get disjoint ports from freePorts and stablePorts", async () => {
  const helpers = new URL("./_helpers/", import.meta.url).href;
  const pick = (helper: "freePorts" | "stablePorts") =>
    `import { ${helper} } from "${helpers}${helper === "freePorts" ? "net" : "procs"}.ts";\n` +
    `const ports = [];\n` +
    // Small requests, like the tests make.
    `for (let i = 0; i < ${PORTS_EACH / 3}; i++) ports.push(...${helper}(3));\n` +
    `console.log(JSON.stringify(ports));\n`;
  const runs = await Promise.all(
    Array.from({ length: PROCESSES }, (_, i) =>
      new Deno.Command(Deno.execPath(), {
        args: ["eval", pick(i % 2 === 0 ? "freePorts" : "stablePorts")],
        cwd: new URL("..", import.meta.url),
        stdout: "piped",
        stderr: "piped",
      }).output()),
  );
  const seen = new Map<number, number>();
  const clashes: string[] = [];
  runs.forEach((r, i) => {
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    const ports = JSON.parse(new TextDecoder().decode(r.stdout)) as number[];
    assert.equal(ports.length, PORTS_EACH);
    assert.equal(new Set(ports).size, ports.length, `process ${i} got a port twice`);
    for (const p of ports) {
      assert.ok(p >= 10_000 && p < 32768, `${p} is outside 10000-32767`);
      if (seen.has(p)) clashes.push(`${p} (processes ${seen.get(p)} and ${i})`);
      seen.set(p, i);
    }
  });
  assert.deepEqual(clashes, [], `${clashes.length} ports handed to two processes`);
});
