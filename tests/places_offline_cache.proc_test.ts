/**
 * The offline index's cache file across processes: the first process builds and writes it, the
 * next reads it and removes temp files killed writers left; a corrupted, symlinked or another
 * user's file is rebuilt and rewritten; a process that may not write the dir still answers (and
 * writes nothing).
 */

import assert from "node:assert/strict";
import { ROOT } from "./_helpers/task_flags.ts";
import { cacheFileName, readIndexCache } from "../servers/places/offline_cache.ts";

const OFFLINE = new URL("../servers/places/offline.ts", import.meta.url).href;

/** Runs a process that warms the index with `dir` as its state dir and answers one search. */
async function warm(dir: string, write = true): Promise<{ fromCache: boolean; names: string[] }> {
  const script = `
    import { searchOffline, warmOfflineIndex } from ${JSON.stringify(OFFLINE)};
    const info = await warmOfflineIndex(${JSON.stringify(dir)});
    const found = await searchOffline({ lat: 34.06893, lng: -118.445127, radiusKm: 10, bound: 3 });
    console.log(JSON.stringify({ fromCache: info.fromCache, names: found.map((p) => p.name) }));
  `;
  const perms = write ? ["--allow-read", `--allow-write=${dir}`] : ["--allow-read"];
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...perms, "--lock=tests/deno.lock", "-"],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = out.stdin.getWriter();
  await writer.write(new TextEncoder().encode(script));
  await writer.close();
  const { code, stdout, stderr } = await out.output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  return JSON.parse(new TextDecoder().decode(stdout));
}

/**
 * Gives `path` to user 65534 (needs root). Elsewhere says so loudly, and fails under `CI=true`,
 * where the suite runs as root.
 */
async function chownToNobody(path: string): Promise<boolean> {
  try {
    await Deno.chown(path, 65534, 65534);
    return true;
  } catch (err) {
    if (!(err instanceof Deno.errors.PermissionDenied) || Deno.env.get("CI") === "true") throw err;
    console.warn("SKIPPED: another user's cache file (chown needs root)");
    return false;
  }
}

const UCLA_TOP3 = ["Santa Monica", "Sherman Oaks", "Venice"];

Deno.test("places cache (processes): built and written once, then read; a corrupted, symlinked or another user's file is rebuilt and rewritten; no write permission still answers", async () => {
  const dir = await Deno.makeTempDir({ prefix: "places-cache-proc-" });
  const path = `${dir}/${await cacheFileName(["PPLQ", "PPLW", "PPLH"])}`;
  const valid = async () => (await readIndexCache(path)) !== undefined;
  try {
    assert.deepEqual(await warm(dir), { fromCache: false, names: UCLA_TOP3 });
    assert.ok(await valid(), "the first process did not write the cache");
    assert.deepEqual(await warm(dir), { fromCache: true, names: UCLA_TOP3 });

    // A writer killed before its rename left its temp file (10 MB each): the next start removes
    // it once no live write can own it; a fresh one (a concurrent writer's) stays.
    const stale = `${path}.0f8fad5b-d9cb-469f-a165-70867728950e.tmp`;
    const fresh = `${path}.1f8fad5b-d9cb-469f-a165-70867728950e.tmp`;
    await Deno.writeFile(stale, new Uint8Array(1024));
    await Deno.writeFile(fresh, new Uint8Array(1024));
    const minutesAgo = new Date(Date.now() - 5 * 60_000);
    await Deno.utime(stale, minutesAgo, minutesAgo);
    assert.deepEqual(await warm(dir), { fromCache: true, names: UCLA_TOP3 });
    await assert.rejects(Deno.lstat(stale), Deno.errors.NotFound, "a killed writer's temp stayed");
    await Deno.lstat(fresh);
    await Deno.remove(fresh);

    // Corrupted: a byte in the middle flipped.
    const bytes = await Deno.readFile(path);
    bytes[bytes.length >> 1] ^= 0xff;
    await Deno.writeFile(path, bytes);
    assert.ok(!(await valid()));
    assert.deepEqual(await warm(dir), { fromCache: false, names: UCLA_TOP3 });
    assert.ok(await valid(), "the corrupted file was not rewritten");

    // Symlinked to a valid file elsewhere: not read, replaced by a file of its own.
    const target = `${dir}/target.bin`;
    await Deno.rename(path, target);
    await Deno.symlink(target, path);
    assert.deepEqual(await warm(dir), { fromCache: false, names: UCLA_TOP3 });
    assert.ok(!(await Deno.lstat(path)).isSymlink, "the symlink was not replaced");
    assert.ok(await valid());

    // Another user's file (a valid index, 0600) is not read, whatever it holds: the process has
    // no --allow-sys, so its own user is that of a file it creates (servers/own_file.ts).
    if (await chownToNobody(path)) {
      assert.deepEqual(await warm(dir), { fromCache: false, names: UCLA_TOP3 });
      assert.equal((await Deno.lstat(path)).uid, Deno.uid(), "another user's file was kept");
      assert.ok(await valid());
    }

    // No write permission, no file: builds, answers, writes nothing.
    await Deno.remove(path);
    assert.deepEqual(await warm(dir, false), { fromCache: false, names: UCLA_TOP3 });
    await assert.rejects(Deno.lstat(path), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
