/**
 * A dynamic import that Deno cannot see ahead of time.
 *
 * Deno reads, parses and resolves every `import("literal")` of a program's graph (and theirs, npm
 * packages included) before the program's first line runs: main.ts's lazy loads of the herd, the
 * dashboard and the client made `server NAME` listen 100-150 ms later (strace: main.ts opened,
 * then ~190 files read, then the bind). A specifier passed as a value is resolved only when the
 * import runs, so what comes before the listen costs only the static graph.
 *
 * @module
 */

/**
 * Imports `specifier` (a bare name from the import map, or a URL: resolve relative paths with
 * `new URL(path, import.meta.url)`) when called, not before the program starts. `T` is the
 * module's type, e.g. `typeof import("./run.ts")` (a type, erased: nothing is loaded for it).
 *
 * @example
 * ```ts
 * const { VERSION } = await lateImport<typeof import("../servers/version.ts")>(
 *   new URL("../servers/version.ts", import.meta.url),
 * );
 * ```
 */
export function lateImport<T>(specifier: string | URL): Promise<T> {
  const href = specifier instanceof URL ? specifier.href : specifier;
  const file = specifier instanceof URL && specifier.protocol === "file:";
  const path = file ? decodeURIComponent(specifier.pathname) : href;
  if (file) {
    // Deno asks for read access to a module it did not see ahead; without it, one line naming
    // the flag (main.ts prints NotCapable as `error: ...`, exit 2), not an uncaught TypeError.
    if (Deno.permissions.querySync({ name: "read", path: specifier }).state !== "granted") {
      return Promise.reject(
        new Deno.errors.NotCapable(
          `the program reads its own modules when it needs them (${path}): run with --allow-read ` +
            "(every deno.json task grants it)",
        ),
      );
    }
  }
  return import(href).catch((err: unknown) => {
    // A module read, resolved or fetched only now fails after main.ts runs (an npm package not
    // cached on an offline machine): one line naming it, not an uncaught TypeError and its stack.
    if (err instanceof Deno.errors.NotCapable) throw err;
    // Deno's message has the importing line in colour ("at file:...:8:23"): the cause only.
    const why = String((err as Error)?.message ?? err).replace(/\x1b\[[0-9;]*m/g, "")
      .split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("at "))
      .join("; ");
    throw new ModuleLoadError(`cannot load ${path}: ${why}`);
  });
}

/** A module that {@linkcode lateImport} could not load (main.ts: one line, exit 2). */
export class ModuleLoadError extends Error {
  override name = "ModuleLoadError";
}
