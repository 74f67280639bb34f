/**
 * The import graph of the code (servers/, dashboard/, cli/, main.ts), as `deno info --json`
 * resolves it, type-only imports included: no import circle, no import from a lower layer to a
 * higher one (servers/ knows neither the dashboard nor the command line), and the record rules
 * and the protocol core stay free of the event module.
 */

import assert from "node:assert/strict";
import { denoInfo } from "./_helpers/deno_info.ts";

const ROOT = new URL("../", import.meta.url);

/** Every local module the code reaches, with the local modules it imports (paths from the root). */
async function importGraph(): Promise<Map<string, string[]>> {
  const files: string[] = ["main.ts"];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(new URL(dir, ROOT))) {
      const path = `${dir}${e.name}`;
      if (e.isDirectory) await walk(`${path}/`);
      else if (/\.tsx?$/.test(e.name)) files.push(path);
    }
  };
  for (const dir of ["servers/", "dashboard/", "cli/"]) await walk(dir);
  // One root importing every file: one `deno info` run sees the whole graph.
  const tmp = await Deno.makeTempDir({ prefix: "imports_test_" });
  try {
    const all = `${tmp}/all.ts`;
    await Deno.writeTextFile(
      all,
      files.map((f) => `import ${JSON.stringify(new URL(f, ROOT).href)};\n`).join(""),
    );
    const info = await denoInfo(all);
    const local = (s: string | undefined) =>
      s !== undefined && s.startsWith(ROOT.href) ? s.slice(ROOT.href.length) : undefined;
    const graph = new Map<string, string[]>();
    for (const m of info.modules) {
      const from = local(m.specifier);
      if (from === undefined) continue;
      const deps = new Set<string>();
      for (const d of m.dependencies ?? []) {
        for (const to of [local(d.code?.specifier), local(d.type?.specifier)]) {
          if (to !== undefined) deps.add(to);
        }
      }
      graph.set(from, [...deps]);
    }
    assert.ok(graph.size >= files.length, `deno info saw ${graph.size} of ${files.length} files`);
    return graph;
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

/** The import circles of a graph: its strongly connected components of more than one module. */
function circles(graph: Map<string, string[]>): string[][] {
  // Tarjan's algorithm, iterative (no recursion limit on a deep graph).
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  for (const start of graph.keys()) {
    if (index.has(start)) continue;
    const work: { v: string; i: number }[] = [{ v: start, i: 0 }];
    index.set(start, next);
    low.set(start, next++);
    stack.push(start);
    onStack.add(start);
    while (work.length > 0) {
      const top = work[work.length - 1];
      const deps = graph.get(top.v) ?? [];
      if (top.i < deps.length) {
        const w = deps[top.i++];
        if (!index.has(w)) {
          index.set(w, next);
          low.set(w, next++);
          stack.push(w);
          onStack.add(w);
          work.push({ v: w, i: 0 });
        } else if (onStack.has(w)) low.set(top.v, Math.min(low.get(top.v)!, index.get(w)!));
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1].v;
        low.set(parent, Math.min(low.get(parent)!, low.get(top.v)!));
      }
      if (low.get(top.v) === index.get(top.v)) {
        const component: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          component.push(w);
        } while (w !== top.v);
        if (component.length > 1 || deps.includes(top.v)) found.push(component.sort());
      }
    }
  }
  return found;
}

Deno.test("imports: the circle finder finds circles (so its empty answer below means something)", () => {
  const g = new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a", "d"]], ["d", []], ["e", ["e"]]]);
  assert.deepEqual(circles(g).map((c) => c.join(" ")).sort(), ["a b c", "e"]);
});

Deno.test("imports: no import circle in servers/, dashboard/ or cli/", async () => {
  const graph = await importGraph();
  assert.deepEqual(circles(graph), []);
});

Deno.test("imports: no import from a lower layer to a higher one", async () => {
  const graph = await importGraph();
  const layer = (path: string) =>
    path.startsWith("servers/") ? 0 : path.startsWith("dashboard/") ? 1 : 2;
  const upward: string[] = [];
  for (const [from, deps] of graph) {
    for (const to of deps) if (layer(to) > layer(from)) upward.push(`${from} -> ${to}`);
  }
  assert.deepEqual(upward, []);
});

Deno.test("imports: the record rules and the protocol core depend on no event or I/O module", async () => {
  const graph = await importGraph();
  assert.deepEqual(graph.get("servers/record.ts"), ["servers/limits.ts"]);
  assert.deepEqual(graph.get("servers/limits.ts"), []);
  for (const pure of ["servers/protocol.ts", "servers/store.ts"]) {
    assert.ok(!graph.get(pure)!.includes("servers/events.ts"), `${pure} imports events.ts`);
  }
});
