/**
 * servers/link_port_memory.ts: the file a `server` process keeps its link ports in. What it
 * reads is only ever a first try, so a bad file is an empty memory, never an error; what it
 * writes is owner-only and replaces the file (a symlink there is not followed).
 */

import assert from "node:assert/strict";
import { LinkPortMemory } from "../servers/link_port_memory.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "link-port-memory-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("link port memory: what is remembered is read back by the next run of the same server and config", async () => {
  await withDir(async (dir) => {
    const first = LinkPortMemory.open(dir, "Hill", "/etc/herd.json");
    assert.equal(first.self, undefined);
    assert.equal(first.peers.size, 0);
    first.rememberSelf(40123);
    first.rememberPeer("Jaquez", 40200);
    first.rememberPeer("Smith", 40300);
    first.rememberPeer("Smith", undefined); // forgotten
    await first.flush();
    assert.equal((await Deno.stat(`${dir}/Hill.link-ports`)).mode! & 0o777, 0o600);
    const again = LinkPortMemory.open(dir, "Hill", "/etc/herd.json");
    assert.equal(again.self, 40123);
    assert.deepEqual([...again.peers], [["Jaquez", 40200]]);
    // Another config, or another server: nothing of it.
    const other = LinkPortMemory.open(dir, "Hill", "/etc/other.json");
    assert.equal(other.self, undefined);
    assert.equal(other.peers.size, 0);
    assert.equal(LinkPortMemory.open(dir, "Jaquez", "/etc/herd.json").self, undefined);
    // No leftover temporary files.
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(names, ["Hill.link-ports"]);
  });
});

Deno.test("link port memory: a bad file is an empty memory (bad JSON, bad ports and names, too big, not a file)", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/Hill.link-ports`;
    const config = "/etc/herd.json";
    const cases: [string, string | (() => Promise<void>)][] = [
      ["not JSON", "{self: 1"],
      ["null", "null"],
      ["an array", "[40123]"],
      ["port 0", JSON.stringify({ config, self: 0, peers: {} })],
      ["port 65536", JSON.stringify({ config, self: 65536, peers: { A: 70000 } })],
      ["a string port", JSON.stringify({ config, self: "40123", peers: { A: "1" } })],
      ["a fraction", JSON.stringify({ config, self: 401.5, peers: { A: -1 } })],
      ["bad names", JSON.stringify({ config, peers: { "../x": 1, "a b": 2, "": 3 } })],
      ["too big", JSON.stringify({ config, self: 40123, pad: "x".repeat(70_000) })],
      ["a directory", async () => await Deno.mkdir(path)],
    ];
    for (const [what, content] of cases) {
      await Deno.remove(path, { recursive: true }).catch(() => {});
      if (typeof content === "string") await Deno.writeTextFile(path, content);
      else await content();
      const m = LinkPortMemory.open(dir, "Hill", config);
      assert.equal(m.self, undefined, what);
      assert.equal(m.peers.size, 0, what);
    }
    // A good file that others may write, or that another user owns, is not trusted either
    // (found by a review: in a shared log dir another user could plant one).
    const good = JSON.stringify({ config, self: 40123, peers: { Jaquez: 40200 } });
    await Deno.remove(path, { recursive: true }).catch(() => {});
    await Deno.writeTextFile(path, good, { mode: 0o644 });
    await Deno.chmod(path, 0o644);
    assert.equal(LinkPortMemory.open(dir, "Hill", config).self, 40123, "0644, ours: read");
    await Deno.chmod(path, 0o666);
    assert.equal(LinkPortMemory.open(dir, "Hill", config).self, undefined, "world-writable");
    await Deno.chmod(path, 0o620);
    assert.equal(LinkPortMemory.open(dir, "Hill", config).self, undefined, "group-writable");
    if (Deno.uid() === 0) {
      await Deno.chmod(path, 0o600);
      await Deno.chown(path, 65534, 65534);
      assert.equal(LinkPortMemory.open(dir, "Hill", config).self, undefined, "another owner");
    }
    // A name that is not a server name reads and writes nothing.
    const bad = LinkPortMemory.open(dir, "../Hill", config);
    assert.equal(bad.path, undefined);
  });
});

Deno.test("link port memory: a write replaces a symlink at the path instead of writing through it", async () => {
  await withDir(async (dir) => {
    const victim = `${dir}/victim.txt`;
    await Deno.writeTextFile(victim, "precious\n");
    await Deno.symlink(victim, `${dir}/Hill.link-ports`);
    const m = LinkPortMemory.open(dir, "Hill", "/etc/herd.json");
    assert.equal(m.self, undefined); // a symlink is not read either
    m.rememberSelf(40123);
    await m.flush();
    assert.equal(await Deno.readTextFile(victim), "precious\n");
    assert.ok((await Deno.lstat(`${dir}/Hill.link-ports`)).isFile);
    assert.equal((LinkPortMemory.open(dir, "Hill", "/etc/herd.json")).self, 40123);
  });
});
