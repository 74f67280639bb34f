/**
 * `deno info --json` of a module with the project's deno.json: the module graph tests walk.
 *
 * @module
 */

import assert from "node:assert/strict";

/** One dependency edge of a module. */
export interface InfoDependency {
  code?: { specifier: string };
  type?: { specifier: string };
  isDynamic?: boolean;
}

/** The graph `deno info --json` prints. */
export interface DenoInfo {
  modules: { specifier: string; dependencies?: InfoDependency[] }[];
}

/**
 * The module graph of `path` (dynamic and type-only imports included, marked).
 *
 * @example
 * ```ts
 * const info = await denoInfo("main.ts");
 * info.modules.length > 0; // true
 * ```
 */
export async function denoInfo(path: string): Promise<DenoInfo> {
  const root = new URL("../../", import.meta.url);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "--config", new URL("deno.json", root).pathname, path],
    cwd: root.pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout)) as DenoInfo;
}
