/**
 * The permission flags of a deno.json task (`start`, `server`, `client`, `dashboard`), so tests
 * run main.ts with exactly what `deno task X` grants: a permission the code needs and the task
 * lacks fails the test. A test may widen the scoped lists by the places it chose itself (its temp
 * dir, its hosts), as an operator passes their own; nothing else.
 *
 * @module
 */

/** The project's root folder (main.ts and deno.json live there). */
export const ROOT = new URL("../../", import.meta.url).pathname;

const tasks: Record<string, string> = JSON.parse(
  await Deno.readTextFile(`${ROOT}deno.json`),
).tasks;

/** What a test adds to a task's scoped permissions. */
export interface Widen {
  /** Hosts added to a scoped `--allow-net`. */
  net?: readonly string[];
  /** Paths added to a scoped `--allow-write` (and `--allow-read`). */
  write?: readonly string[];
}

/**
 * The `deno run` flags of a task (what comes between `deno run` and `main.ts`), widened.
 *
 * @example
 * ```ts
 * declare const dir: string;
 * const args = [...taskFlags("server", { write: [dir] }), "main.ts", "server", "Hill"];
 * ```
 */
export function taskFlags(task: string, widen: Widen = {}): string[] {
  const command = tasks[task]?.split("&&").at(-1)?.trim() ?? "";
  // After the environment the task sets (see taskEnv).
  const m = /(?:^| )deno run (.*?) main\.ts /.exec(command + " ");
  if (m === null) throw new Error(`deno.json task ${task} does not run main.ts: ${command}`);
  return m[1].split(/\s+/).map((flag) => {
    const [name, list] = flag.split("=", 2);
    if (list === undefined) return flag;
    const extra = name === "--allow-net"
      ? widen.net
      : name === "--allow-write" || name === "--allow-read"
      ? widen.write
      : undefined;
    return extra?.length ? `${name}=${[list, ...extra].join(",")}` : flag;
  });
}

/**
 * The environment the herd tasks add (`HERD_OPEN_FILES=$(sh -c 'ulimit -n')`: Deno reads
 * /proc/self/limits only with --allow-all, so the tasks pass the shell's limit), computed the
 * same way for a child that inherits this process's limits. A child under another limit
 * (procs.ts `underUlimit`) sets it after its `ulimit`, as the task's shell would.
 */
export async function taskEnv(task: string): Promise<Record<string, string>> {
  const command = tasks[task]?.split("&&").at(-1)?.trim() ?? "";
  if (!command.startsWith("HERD_OPEN_FILES=$(sh -c 'ulimit -n') ")) return {};
  const out = await new Deno.Command("sh", { args: ["-c", "ulimit -n"], stdout: "piped" }).output();
  return { HERD_OPEN_FILES: new TextDecoder().decode(out.stdout).trim() };
}

/**
 * Spawns `main.ts dashboard --config CONFIG --dashboard-port PORT` as `deno task dashboard` would
 * (its permissions, cwd the project), with `env` added to the task's.
 *
 * @example
 * ```ts
 * declare const config: string;
 * const child = spawnDashboard(config, 8000, { HERD_SECRET: "a-secret-of-the-herd" });
 * child.kill();
 * ```
 */
export function spawnDashboard(
  config: string,
  port: number,
  env: Record<string, string>,
  stdout: "piped" | "null" = "piped",
): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...taskFlags("dashboard"),
      "main.ts",
      "dashboard",
      "--config",
      config,
      "--dashboard-port",
      String(port),
    ],
    cwd: ROOT,
    env,
    stdin: "null",
    stdout,
    stderr: "piped",
  }).spawn();
}
