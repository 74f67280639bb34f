/**
 * Whether a file found in a state dir is ours to trust. A data or log dir may be shared (`start
 * --log-dir /tmp` on a shared host): a file another user planted there, or may rewrite, must not
 * steer us (the remembered link ports, the cached Places index). Imports nothing: the early
 * listener (cli/early_listen.ts) uses it before the rest of the program loads.
 *
 * @module
 */

/** Learnt once: the process's user does not change. */
let uid: number | undefined;

/**
 * Whether this process holds a permission (asked without a prompt).
 *
 * @example
 * ```ts
 * granted({ name: "read", path: "/tmp" }); // true under --allow-read
 * ```
 */
export function granted(desc: Deno.PermissionDescriptor): boolean {
  return Deno.permissions.querySync(desc).state === "granted";
}

/**
 * This process's user ID, or null where it cannot be known. `Deno.uid()` needs --allow-sys, which
 * no task grants; without it, the owner of a file this process creates in `dir` (a fresh name,
 * removed at once) is its user. Null when neither is allowed: the mode alone decides then.
 *
 * @example
 * ```ts
 * processUid(await Deno.makeTempDir()); // 1000, or null
 * ```
 */
export function processUid(dir: string): number | null {
  if (uid === undefined) uid = learnUid(dir) ?? undefined;
  return uid ?? null;
}

function learnUid(dir: string): number | null {
  try {
    if (granted({ name: "sys", kind: "uid" })) return Deno.uid();
    if (!granted({ name: "write", path: dir })) return null;
    const probe = `${dir}/.owner-probe-${crypto.randomUUID()}`;
    // createNew: never a file (or a symlink) someone put there.
    using file = Deno.openSync(probe, { createNew: true, write: true, mode: 0o600 });
    try {
      return file.statSync().uid;
    } finally {
      Deno.removeSync(probe);
    }
  } catch {
    return null;
  }
}

/**
 * True for a plain file (`info` from `lstat`: not a symlink) of at most `maxBytes`, owned by this
 * process's user (when both owners are known: see {@linkcode processUid}; `dir` is the file's
 * dir), that neither group nor others may write (we write ours 0600).
 *
 * @example
 * ```ts
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/f`, "", { mode: 0o600 });
 * ownFile(await Deno.lstat(`${dir}/f`), dir, 1024); // true: ours, 0600, empty
 * ```
 */
export function ownFile(info: Deno.FileInfo, dir: string, maxBytes: number): boolean {
  const me = processUid(dir);
  const ours = info.uid === null || me === null || info.uid === me;
  const guarded = info.mode === null || (info.mode & 0o022) === 0;
  return info.isFile && ours && guarded && info.size <= maxBytes;
}
