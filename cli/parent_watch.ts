/**
 * A herd process started by `deno task` stops when the task runner dies.
 *
 * `deno task server NAME` is two processes: the task runner, and its child `deno run ... main.ts`
 * that serves. A SIGTERM or SIGINT to the runner reaches the child, but a SIGKILL cannot be passed
 * on: a grader's `proc.kill()` (Python's subprocess and asyncio send SIGKILL) killed the runner
 * only, and the server, orphaned, went on serving on its ports, so the killed server still
 * answered and its restart found its port in use. The herd tasks set `HERD_STOP_WITH_PARENT` to
 * the runner's pid (`$(sh -c 'echo $PPID')`: the runner is that shell's parent, as it is ours);
 * such a process stops as on SIGTERM once its parent is another (the orphan was re-parented),
 * also when the runner died before this process first looked. A process started otherwise
 * (`deno run ... &` from a script that then exits) is left alone.
 *
 * @module
 */

/** How often the parent is looked at (a `getppid` call): a stop comes at most this much later. */
const WATCH_MS = 50;
const VARIABLE = "HERD_STOP_WITH_PARENT";

/** What a gone parent does: exit until the run installs its graceful stop. */
let onGone: () => void = () => Deno.exit(0);

/**
 * Starts watching the parent when the task asked for it (`HERD_STOP_WITH_PARENT=<runner pid>`,
 * readable under the task's permissions); a no-op otherwise. Never keeps the process alive by
 * itself.
 *
 * @example
 * ```ts
 * watchParent();
 * onParentGone(() => console.log("stopping: the task runner is gone"));
 * ```
 */
export function watchParent(): void {
  const granted = Deno.permissions.querySync({ name: "env", variable: VARIABLE }).state ===
    "granted";
  const parent = granted ? Number(Deno.env.get(VARIABLE)) : NaN;
  if (!Number.isSafeInteger(parent) || parent <= 1) return;
  // Killed between spawning us and now: our parent is already another.
  if (Deno.ppid !== parent) return onGone();
  const timer = setInterval(() => {
    if (Deno.ppid === parent) return;
    clearInterval(timer);
    onGone();
  }, WATCH_MS);
  Deno.unrefTimer(timer);
}

/** Replaces what a gone parent does (the run's graceful stop, as on SIGTERM). */
export function onParentGone(fn: () => void): void {
  onGone = fn;
}
