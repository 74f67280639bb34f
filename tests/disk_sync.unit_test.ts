/**
 * The record logs' sync thread (servers/disk_sync.ts): the syncs of one turn go in one message,
 * errors come back as the `fdatasync` error, a file renamed over the path (a compaction) is
 * synced as the new file, and the thread lets go of the files and ends with its last user.
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
    sync.use();
    const paths = [0, 1, 2, 3, 4].map((i) => `${dir}/f${i}.records`);
    for (const p of paths) Deno.writeTextFileSync(p, "a record\n");
    await Promise.all(paths.map((p) => sync.sync(p)));
    assert.equal(sync.batches, 1);
    // Separate turns, separate messages; the same path twice in one turn is fine.
    await sync.sync(paths[0]);
    await Promise.all([sync.sync(paths[1]), sync.sync(paths[1])]);
    assert.equal(sync.batches, 3);
    for (const p of paths) sync.release(p);
  }));

Deno.test("disk sync: a failing sync rejects with its error; the others of its message succeed", () =>
  withDir(async (dir) => {
    const sync = new DiskSync();
    sync.use();
    const good = `${dir}/good.records`;
    Deno.writeTextFileSync(good, "x\n");
    const [ok, bad] = await Promise.allSettled([
      sync.sync(good),
      sync.sync(`${dir}/missing.records`),
    ]);
    assert.equal(ok.status, "fulfilled");
    assert.equal(bad.status, "rejected");
    const err = (bad as PromiseRejectedResult).reason as Error;
    assert.equal(err.name, "NotFound");
    assert.match(err.message, /missing\.records/);
    sync.release(good);
  }));

Deno.test("disk sync: a file renamed over the path is synced as the new file; release closes all", () =>
  withDir(async (dir) => {
    const sync = new DiskSync();
    sync.use();
    const path = `${dir}/Hill.records`;
    Deno.writeTextFileSync(path, "old\n");
    await sync.sync(path);
    assert.deepEqual(openUnder(dir), [path], "the sync thread holds the log");
    // A compaction: a new file renamed over the log.
    Deno.writeTextFileSync(`${path}.tmp`, "new\n");
    Deno.renameSync(`${path}.tmp`, path);
    assert.deepEqual(openUnder(dir), [`${path} (deleted)`]);
    await sync.sync(path);
    assert.deepEqual(openUnder(dir), [path], "the old file let go of, the new one synced");
    sync.release(path);
    // The last user gone, the thread ends, its descriptors with it.
    for (let i = 0; i < 100 && openUnder(dir).length > 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(openUnder(dir), []);
  }));
