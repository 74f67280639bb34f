/**
 * The record logs' sync thread (servers/disk_sync.ts): with more than one log, the syncs of one
 * turn go in one message; errors come back as the `fdatasync` error; a file renamed over the
 * path (a compaction) is synced as the new file; the thread lets go of the files and ends with
 * its last user; a lone log syncs on its own descriptor, with no thread.
 */

import assert from "node:assert/strict";
import { DiskSync } from "../servers/disk_sync.ts";

/** Paths of this process's descriptors that name a file under `dir` ("(deleted)" kept). */
function openUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      const target = Deno.readLinkSync(`/proc/self/fd/${e.name}`);
      if (target.startsWith(dir)) out.push(target);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** `n` files under `dir` with a line each, open for writing as a log holds them. */
function logs(dir: string, n: number): { path: string; file: Deno.FsFile }[] {
  return Array.from({ length: n }, (_, i) => {
    const path = `${dir}/f${i}.records`;
    const file = Deno.openSync(path, { write: true, create: true });
    file.writeSync(new TextEncoder().encode("a record\n"));
    return { path, file };
  });
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("disk sync: the syncs asked for in one turn go to the sync thread in one message", () =>
  withDir(async (dir) => {
    const sync = new DiskSync();
    const files = logs(dir, 5);
    for (const _ of files) sync.use();
    await Promise.all(files.map((f) => sync.sync(f.path, f.file)));
    assert.equal(sync.batches, 1);
    // Separate turns, separate messages; the same path twice in one turn is fine.
    await sync.sync(files[0].path, files[0].file);
    await Promise.all([1, 1].map((i) => sync.sync(files[i].path, files[i].file)));
    assert.equal(sync.batches, 3);
    for (const f of files) {
      sync.release(f.path);
      f.file.close();
    }
  }));

Deno.test("disk sync: a lone log syncs on its own descriptor, with no thread", () =>
  withDir(async (dir) => {
    const sync = new DiskSync();
    const [f] = logs(dir, 1);
    sync.use();
    await sync.sync(f.path, f.file);
    assert.equal(sync.batches, 0);
    assert.deepEqual(openUnder(dir), [f.path], "only the log's own descriptor");
    sync.release(f.path);
    f.file.close();
  }));

Deno.test("disk sync: a failing sync rejects with its error; the others of its message succeed", () =>
  withDir(async (dir) => {
    const sync = new DiskSync();
    const [good, gone] = logs(dir, 2);
    sync.use();
    sync.use();
    Deno.removeSync(gone.path);
    const [ok, bad] = await Promise.allSettled([
      sync.sync(good.path, good.file),
      sync.sync(gone.path, gone.file),
    ]);
    assert.equal(ok.status, "fulfilled");
    assert.equal(bad.status, "rejected");
    const err = (bad as PromiseRejectedResult).reason as Error;
    assert.equal(err.name, "NotFound");
    assert.match(err.message, /f1\.records/);
    for (const f of [good, gone]) {
      sync.release(f.path);
      f.file.close();
    }
  }));

Deno.test("disk sync: a file renamed over the path is synced as the new file; release closes all", () =>
  withDir(async (dir) => {
    const sync = new DiskSync();
    const [a, b] = logs(dir, 2);
    sync.use();
    sync.use();
    b.file.close();
    await sync.sync(a.path, a.file);
    a.file.close();
    assert.deepEqual(openUnder(dir), [a.path], "the sync thread holds the log");
    // A compaction: a new file renamed over the log.
    Deno.writeTextFileSync(`${a.path}.tmp`, "new\n");
    Deno.renameSync(`${a.path}.tmp`, a.path);
    assert.deepEqual(openUnder(dir), [`${a.path} (deleted)`]);
    using renamed = Deno.openSync(a.path, { write: true });
    await sync.sync(a.path, renamed);
    renamed.close();
    assert.deepEqual(openUnder(dir), [a.path], "the old file let go of, the new one synced");
    sync.release(a.path);
    sync.release(b.path);
    // The last user gone, the thread ends, its descriptors with it.
    // (Bounded: 5 s. The tests' waitFor lives in a net-tier helper.)
    for (let i = 0; i < 500 && openUnder(dir).length > 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(openUnder(dir), []);
  }));
