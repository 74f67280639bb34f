/**
 * The sync thread of servers/disk_sync.ts: `fdatasync`s the files it is asked to, all of one
 * message in parallel, and answers with each one's error (or null) in one message.
 *
 * @module
 */

/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />

import type { SyncMessage, SyncReply } from "./disk_sync.ts";

/** Our descriptor of each log, and the inode it was opened on. */
const files = new Map<string, { file: Deno.FsFile; ino: number | null }>();

/** Our descriptor of `path`, opened again when the path now names another file. */
function fileOf(path: string): Deno.FsFile {
  const ino = Deno.statSync(path).ino;
  const held = files.get(path);
  if (held !== undefined && held.ino === ino) return held.file;
  held?.file.close();
  // Read-only: fdatasync needs no write access, and this thread must never write the log.
  const file = Deno.openSync(path, { read: true });
  files.set(path, { file, ino });
  return file;
}

async function syncOne(path: string): Promise<SyncReply["errors"][number]> {
  try {
    await fileOf(path).syncData();
    return null;
  } catch (err) {
    const e = err as Error;
    return { name: e.name ?? "Error", message: e.message ?? String(err) };
  }
}

self.onmessage = async (e: MessageEvent<SyncMessage>) => {
  const m = e.data;
  if ("forget" in m) {
    files.get(m.forget)?.file.close();
    files.delete(m.forget);
    return;
  }
  // A path asked for twice in one message is synced once.
  const unique = [...new Set(m.paths)];
  const results = new Map(
    await Promise.all(unique.map(async (p) => [p, await syncOne(p)] as const)),
  );
  self.postMessage({ id: m.id, errors: m.paths.map((p) => results.get(p)!) } satisfies SyncReply);
};
