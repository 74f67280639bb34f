/**
 * The sync thread of servers/disk_sync.ts: `fdatasync`s the files it is asked to, all of one
 * message in parallel, and answers with each one's error (or null) in one message
 * (`SyncMessage` in, `SyncReply` out, as disk_sync.ts declares them).
 *
 * JavaScript, like places/offline_worker.js: under `deno test` a TypeScript Worker root is
 * type-checked when it starts, which held a test process's first commit for seconds.
 *
 * @module
 */

/** Our descriptor of each log, and the inode it was opened on. */
const files = new Map();

/** Our descriptor of `path`, opened again when the path now names another file. */
function fileOf(path) {
  const ino = Deno.statSync(path).ino;
  const held = files.get(path);
  if (held !== undefined && held.ino === ino) return held.file;
  held?.file.close();
  // Read-only: fdatasync needs no write access, and this thread must never write the log.
  const file = Deno.openSync(path, { read: true });
  files.set(path, { file, ino });
  return file;
}

async function syncOne(path) {
  try {
    await fileOf(path).syncData();
    return null;
  } catch (err) {
    return { name: err?.name ?? "Error", message: err?.message ?? String(err) };
  }
}

self.onmessage = async (e) => {
  const m = e.data;
  if ("forget" in m) {
    files.get(m.forget)?.file.close();
    files.delete(m.forget);
    return;
  }
  // A path asked for twice in one message is synced once.
  const unique = [...new Set(m.paths)];
  const results = new Map(await Promise.all(unique.map(async (p) => [p, await syncOne(p)])));
  self.postMessage({ id: m.id, errors: m.paths.map((p) => results.get(p)) });
};
