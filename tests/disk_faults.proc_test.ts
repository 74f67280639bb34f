/**
 * The store under faults, with real processes, kill -9 and restart:
 *
 * - `--sync-ack` records as large as a client line allows (over Deno KV's old 64 KiB value
 *   limit), and batches of several MiB (over its old 800 KiB batch limit), all survive kill -9;
 * - a disk that fills (a 4 MiB tmpfs): IAMATs under `--sync-ack` get `? ...` while it is full,
 *   the server keeps serving from memory and flooding, and once space returns everything owed is
 *   written: after kill -9 every acknowledged record is there and all servers converge;
 * - a stored record corrupted on disk is skipped and reported, WHATSAT still answers, the server
 *   does not crash, and the record comes back from a neighbour.
 */

import assert from "node:assert/strict";
import { iamat, ProcessHerd, waitKnown, whatsatMany } from "./_helpers/procs.ts";
import { TcpClient, waitFor } from "./_helpers/net.ts";
import { openLogPersistence } from "../servers/persist.ts";
import { RecordStore } from "../servers/store.ts";
import { formatLogLine, openLogs } from "../servers/log.ts";
import { HerdMetrics } from "../servers/ops/metrics.ts";
import { parseExposition } from "./_helpers/prom.ts";
import { errorBus, storedRecord } from "./_helpers/records.ts";
import { leasePorts } from "./_helpers/ports.ts";
import { describe } from "../dashboard/islands/_model.ts";
import type { DashEvent } from "../dashboard/types.ts";

/** The longest client line the server accepts today (its line limit), without the LF. */
const MAX_LINE = 65_536;

/** An IAMAT line of exactly `length` bytes: a short client ID and a long time field. */
function longIamat(client: string, length: number, seconds = 1700000000): string {
  const head = `IAMAT ${client} +1+1 ${seconds}.`;
  return head + "7".repeat(length - head.length);
}

/**
 * Sends each line on its own connection, all at once; returns the reply line (without LF) per
 * line, in order.
 */
async function concurrentLines(port: number, lines: string[], ms = 30_000): Promise<string[]> {
  return await Promise.all(lines.map(async (line) => {
    await using c = await TcpClient.connect(port);
    await c.send(line + "\n");
    const [reply] = await c.replies(1, ms);
    return reply.slice(0, -1);
  }));
}

/** The IAMAT's client and the AT line it was acknowledged with, asserting it was. */
function acked(lines: string[], replies: string[]): Map<string, string> {
  const out = new Map<string, string>();
  replies.forEach((r, i) => {
    const client = lines[i].split(" ")[1];
    assert.ok(r.startsWith("AT ") && r.split(" ")[3] === client, r.slice(0, 200));
    out.set(client, r);
  });
  return out;
}

/** Asserts a server has exactly the expected AT line for every client. */
async function assertHas(herd: ProcessHerd, name: string, want: ReadonlyMap<string, string>) {
  const got = await whatsatMany(herd.port(name), [...want.keys()], 30_000);
  const wrong = [...want].filter(([c, at]) => got.get(c) !== at);
  assert.equal(
    wrong.length,
    0,
    `${name} lacks ${wrong.length} of ${want.size} expected records, e.g. ${
      wrong.slice(0, 3).map(([c]) => `${c} (got ${got.get(c)?.slice(0, 60) ?? "?"})`).join(", ")
    }`,
  );
}

Deno.test("disk: --sync-ack records over 64 KiB (the old value limit) survive kill -9", async () => {
  // No neighbour: a record this long does not fit a peer line today (a separate finding).
  await using herd = await ProcessHerd.create({ topology: { Solo: [] } });
  await herd.start("Solo", ["--sync-ack"]);
  const lines = Array.from({ length: 50 }, (_, i) => longIamat(`v${i}`, MAX_LINE));
  const want = acked(lines, await concurrentLines(herd.port("Solo"), lines));
  await herd.kill("Solo");
  await herd.start("Solo", ["--sync-ack"]);
  await assertHas(herd, "Solo", want);
  // Replacing them with more of the same size is durable too.
  const again = Array.from(
    { length: 10 },
    (_, i) => longIamat(`v${i}`, MAX_LINE - 1, 1700000001),
  );
  for (const [c, at] of acked(again, await concurrentLines(herd.port("Solo"), again))) {
    want.set(c, at);
  }
  await herd.kill("Solo");
  await herd.start("Solo", ["--sync-ack"]);
  await assertHas(herd, "Solo", want);
});

Deno.test("disk: --sync-ack batches of MiBs (over the old 800 KiB limit) survive kill -9 and converge", async () => {
  const topology = { Ant: ["Bee"], Bee: ["Ant", "Cat"], Cat: ["Bee"] };
  await using herd = await ProcessHerd.create({ topology, args: () => ["--sync-ack"] });
  await herd.startAll();
  await herd.waitLinksUp();
  // 100 records of 20 KB at once at Ant and at Cat: one group commit of ~2 MB at each, and
  // the same records arriving at Bee from both sides.
  const own = new Map<string, Map<string, string>>();
  await Promise.all(["Ant", "Cat"].map(async (s) => {
    const lines = Array.from({ length: 100 }, (_, i) => longIamat(`b.${s}.${i}`, 20_000));
    own.set(s, acked(lines, await concurrentLines(herd.port(s), lines)));
  }));
  await herd.killAll();
  // Each alone, from its own disk: everything it acknowledged.
  await herd.startAll(["Ant", "Cat"], [], await herd.writeIsolatedConfig());
  await assertHas(herd, "Ant", own.get("Ant")!);
  await assertHas(herd, "Cat", own.get("Cat")!);
  await herd.killAll();
  // All together: every server holds every record.
  await herd.startAll();
  await herd.waitLinksUp();
  const everything = new Map([...own.get("Ant")!, ...own.get("Cat")!]);
  await waitKnown(herd, herd.names, everything, 30_000);
});

/** Why a 4 MiB tmpfs cannot be mounted here, or undefined when it can. */
async function tmpfsProblem(): Promise<string | undefined> {
  const dir = await Deno.makeTempDir({ prefix: "herd-tmpfs-probe-" });
  try {
    const out = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=4m", "tmpfs", dir],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!out.success) return new TextDecoder().decode(out.stderr).trim() || "mount failed";
    await new Deno.Command("umount", { args: [dir] }).output();
    return undefined;
  } catch (err) {
    return `cannot run mount: ${(err as Error).message}`;
  } finally {
    await Deno.remove(dir).catch(() => {});
  }
}

const NO_TMPFS = await tmpfsProblem();
const CI = Deno.env.get("CI") === "true";
if (NO_TMPFS !== undefined) {
  console.error(
    `\n!!! SKIPPING the full-disk test: cannot mount a tmpfs (needs root): ${NO_TMPFS}` +
      (CI ? " -- and CI=true, so it FAILS instead\n" : "\n"),
  );
}

/** Fills the file system holding `path` with one file until it is full; returns its size. */
async function fill(path: string): Promise<number> {
  const file = await Deno.open(path, { write: true, create: true });
  const chunk = new Uint8Array(16 * 1024).fill(120);
  let size = 0;
  try {
    for (let i = 0; i < 10_000; i++) size += await file.write(chunk);
    throw new Error("the tmpfs never filled");
  } catch (err) {
    if (!/space/i.test(String(err))) throw err;
  } finally {
    file.close();
  }
  return size;
}

/**
 * A test that needs a tmpfs: skipped (loudly, above) where none can be mounted, and failing
 * there under CI=true.
 */
function tmpfsTest(name: string, fn: () => Promise<void>): void {
  Deno.test({
    name,
    ignore: NO_TMPFS !== undefined && !CI,
    async fn() {
      if (NO_TMPFS !== undefined) {
        throw new Error(`CI=true but tmpfs cannot be mounted: ${NO_TMPFS}`);
      }
      await fn();
    },
  });
}

/** Unmounts (lazily) the tmpfs on `dir` and removes the dir; for a test's `finally`. */
async function unmountTmpfs(dir: string): Promise<void> {
  await new Deno.Command("umount", { args: ["-l", dir] }).output();
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}

/** Mounts a tmpfs of `size` (e.g. "4m") on `dir`. */
async function mountTmpfs(dir: string, size: string): Promise<void> {
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir],
  }).output();
  assert.ok(mount.success, `mount of a ${size} tmpfs on ${dir} failed`);
}

tmpfsTest(
  "disk: a full disk (4 MiB tmpfs) answers --sync-ack with ?, keeps serving, writes what it owes",
  async () => {
    const topology = { Ant: ["Bee"], Bee: ["Ant", "Cat"], Cat: ["Bee"] };
    const herd = await ProcessHerd.create({ topology, args: () => ["--sync-ack"] });
    await Deno.mkdir(herd.dataDir, { recursive: true });
    await mountTmpfs(herd.dataDir, "4m");
    try {
      await herd.startAll();
      await herd.waitLinksUp();
      const want = new Map<string, string>();
      const line = (c: string) => longIamat(c, 1_000);
      const send = async (port: number, lines: string[]) => await concurrentLines(port, lines);
      for (
        const [c, at] of acked([line("f.before")], await send(herd.port("Ant"), [line("f.before")]))
      ) {
        want.set(c, at);
      }
      const filler = `${herd.dataDir}/filler`;
      await fill(filler);

      // Full: IAMATs at Ant are acknowledged until the file's last page is used up, then `?`.
      const refused: string[] = [];
      for (let i = 0; i < 200 && refused.length < 5; i++) {
        const l = line(`f.full.${i}`);
        const [reply] = await send(herd.port("Ant"), [l]);
        if (reply.startsWith("AT ")) want.set(`f.full.${i}`, reply);
        else {
          assert.equal(reply, `? ${l}`, "a full disk must answer ? <the IAMAT line>");
          refused.push(`f.full.${i}`);
        }
      }
      assert.equal(refused.length, 5, "no IAMAT refused on a full disk: acknowledged, not on disk");
      // Still serving from memory, and flooding: Cat, two hops away, knows the refused records.
      const owed = new Map<string, string>();
      const inMemory = await whatsatMany(herd.port("Ant"), [...want.keys(), ...refused]);
      for (const [c, at] of want) assert.equal(inMemory.get(c), at, c);
      for (const c of refused) {
        assert.ok(inMemory.get(c)?.startsWith("AT "), `refused ${c} not served from memory`);
        owed.set(c, inMemory.get(c)!);
      }
      await waitKnown(herd, ["Cat"], owed, 10_000);
      // Cat got them but could not write them, nor the mark that says it got them: killed now,
      // it must get them from Bee again once it is back (no mark may pass an unwritten record).
      await herd.kill("Cat");
      const log = await waitLog(herd, "Ant", /ERROR .*disk-write/);
      assert.ok(!log.includes("procs-test-secret"), "the secret leaked into the log");

      // Space returns: an IAMAT is acknowledged again within the retry backoff.
      await Deno.remove(filler);
      let back: string | undefined;
      for (let i = 0; i < 100 && back === undefined; i++) {
        const [reply] = await send(herd.port("Ant"), [line(`f.back.${i}`)]);
        if (reply.startsWith("AT ")) back = reply;
        else await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(back !== undefined, "IAMATs still refused 10 s after space returned");
      await herd.start("Cat");
      await herd.waitLinksUp();
      await waitKnown(herd, ["Cat"], owed, 10_000);
      want.set(back.split(" ")[3], back);
      const antOwn = new Map([...want, ...owed]);
      for (const s of herd.names) {
        const lines = Array.from({ length: 20 }, (_, i) => line(`f.after.${s}.${i}`));
        for (const [c, at] of acked(lines, await send(herd.port(s), lines))) {
          want.set(c, at);
          if (s === "Ant") antOwn.set(c, at);
        }
      }
      await herd.killAll();

      // Ant alone: every record it acknowledged, and the refused ones it owed (queued before
      // the later acknowledgements, so on disk with them).
      await herd.start("Ant", [], await herd.writeIsolatedConfig());
      await assertHas(herd, "Ant", antOwn);
      await herd.kill("Ant");
      // All together converge on every acknowledged record (and the owed ones).
      await herd.startAll();
      await herd.waitLinksUp();
      await waitKnown(herd, herd.names, new Map([...want, ...owed]), 30_000);
    } finally {
      await herd.killAll();
      await new Deno.Command("umount", { args: ["-l", herd.dataDir] }).output();
      await herd.close();
    }
  },
);

tmpfsTest(
  "disk: an append cut short by a full disk is cut off, and the retry lands right after the good entries",
  async () => {
    const dir = await Deno.makeTempDir();
    await mountTmpfs(dir, "1m");
    try {
      const { bus, errors } = errorBus();
      const log = await openLogPersistence(dir, "Hill");
      await log.load(new RecordStore(), [], bus);
      for (let i = 1; i <= 3; i++) log.saved(storedRecord(`good${i}`, i));
      await log.flush();
      const good = (await Deno.stat(`${dir}/Hill.records`)).size;
      await fill(`${dir}/filler`);
      // More than the log file's last page holds: the write stops part way, then fails.
      for (let i = 4; i <= 300; i++) log.saved(storedRecord(`owed${i}`, i));
      await log.flush();
      assert.equal(log.writable, false, "the append did not fail: the disk was not full");
      assert.equal((await Deno.stat(`${dir}/Hill.records`)).size, good, "partial append not cut");
      await Deno.remove(`${dir}/filler`);
      await log.flush();
      assert.equal(log.writable, true);
      await log.close();

      const store = new RecordStore();
      const { bus: bus2, errors: reloadErrors } = errorBus();
      const again = await openLogPersistence(dir, "Hill");
      await again.load(store, [], bus2);
      await again.close();
      assert.deepEqual(
        reloadErrors.map((e) => e.message),
        [],
        "the file has a hole or a torn entry",
      );
      assert.equal(store.size, 300);
      assert.ok(errors.some((e) => e.reason === "disk-write"), "the full disk was not reported");
    } finally {
      await new Deno.Command("umount", { args: ["-l", dir] }).output();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/** Waits (bounded) until a server's log matches; returns the log. */
async function waitLog(herd: ProcessHerd, name: string, re: RegExp, ms = 5000): Promise<string> {
  const deadline = performance.now() + ms;
  for (;;) {
    const text = await herd.log(name);
    if (re.test(text)) return text;
    if (performance.now() > deadline) {
      throw new Error(`${name}'s log never matched ${re}: ${text.slice(-600)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Replaces `from` by `to` (same length) wherever it occurs in a file; returns how often. */
async function patchFile(path: string, from: string, to: string): Promise<number> {
  assert.equal(from.length, to.length);
  const text = new TextDecoder("latin1").decode(await Deno.readFile(path));
  const parts = text.split(from);
  const out = parts.join(to);
  const bytes = new Uint8Array(out.length);
  for (let i = 0; i < out.length; i++) bytes[i] = out.charCodeAt(i);
  await Deno.writeFile(path, bytes);
  return parts.length - 1;
}

Deno.test("disk: a stored record with a corrupted digit is skipped, reported, and comes back", async () => {
  const topology = { Ant: ["Bee"], Bee: ["Ant"] };
  await using herd = await ProcessHerd.create({ topology, args: () => ["--sync-ack"] });
  await herd.startAll();
  await herd.waitLinksUp();
  const want = new Map<string, string>();
  for (let i = 0; i < 20; i++) {
    want.set(
      `c.${i}`,
      await iamat(herd.port("Ant"), `c.${i}`, `+12.${1000 + i}-98.7654`, `17000000${i}`),
    );
  }
  await waitKnown(herd, herd.names, want, 10_000);
  await new Promise((r) => setTimeout(r, 300)); // Bee's commit of what it received
  await herd.killAll();
  // One digit of c.7's latitude becomes 9: +92.1007 is no valid latitude.
  // Ant's store is the one place it is corrupted (its pre-log layout: every file of its own).
  const antFiles = [...Deno.readDirSync(herd.dataDir)].map((e) => e.name).filter((n) =>
    n.startsWith("Ant.")
  );
  let hits = 0;
  for (const f of antFiles) {
    hits += await patchFile(`${herd.dataDir}/${f}`, "+12.1007-98.7654", "+92.1007-98.7654");
  }
  assert.ok(hits >= 1, `c.7's location not found in ${antFiles.join(", ")}`);

  await herd.start("Ant", [], await herd.writeIsolatedConfig());
  const got = await whatsatMany(herd.port("Ant"), [...want.keys()]);
  assert.equal(got.get("c.7"), undefined, "the corrupted record was served");
  for (const [c, at] of want) if (c !== "c.7") assert.equal(got.get(c), at, c);
  // Asked directly, with a Places search: still an answer, and the server is still up.
  const raw = await concurrentLines(herd.port("Ant"), ["WHATSAT c.7 10 5", "IAMAT c.x +1+1 5"]);
  assert.deepEqual(raw.map((r) => r.slice(0, 2)), ["? ", "AT"]);
  assert.ok(herd.running("Ant"), "Ant crashed");
  await waitLog(herd, "Ant", /ERROR .*record-invalid/);
  await herd.kill("Ant");

  // With its neighbour back, Ant gets the record again and the link stays up.
  await herd.startAll();
  await herd.waitLinksUp();
  await waitKnown(herd, herd.names, want, 10_000);
  assert.ok(!(await herd.log("Bee")).includes("garbage"), "the link flapped on garbage");
});

Deno.test("disk: an invalid record in a store of the previous version does not crash WHATSAT", async () => {
  await using herd = await ProcessHerd.create({ topology: { Solo: [] } });
  // The Deno KV layout earlier versions wrote, with a latitude out of range and a good one.
  await Deno.mkdir(herd.dataDir, { recursive: true });
  const kv = await Deno.openKv(`${herd.dataDir}/Solo.kv`);
  const value = (text: string) => new TextEncoder().encode(text);
  await kv.set(["meta", "epoch"], "e0123456");
  await kv.set(["r", "bad"], value("Solo +0.500000000 +92.1007-98.7654 5 1"));
  await kv.set(["r", "good"], value("Solo +0.500000000 +12.1007-98.7654 6 2"));
  kv.close();

  await herd.start("Solo");
  const replies = await concurrentLines(herd.port("Solo"), [
    "WHATSAT bad 10 5",
    "WHATSAT good 10 0",
  ]);
  assert.equal(replies[0], "? WHATSAT bad 10 5");
  assert.ok(replies[1].startsWith("AT Solo +0.500000000 good +12.1007-98.7654 6"), replies[1]);
  assert.match(await iamat(herd.port("Solo"), "x", "+1+1", "1"), /^AT Solo /);
  assert.ok(herd.running("Solo"), "Solo crashed");
  await waitLog(herd, "Solo", /ERROR record-invalid: 1 unreadable or invalid stored entry/);
});

tmpfsTest(
  "disk: a failed write rejects committed(), is an error event, a metric and a feed line, and is retried",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "herd-tmpfs-" });
    await mountTmpfs(dir, "1m");
    const { bus, errors } = errorBus();
    const metrics = new HerdMetrics({
      bus,
      snapshot: () => ({ servers: [], records: [], places: "offline" }),
    });
    const p = await openLogPersistence(dir, "Hill");
    try {
      await p.load(new RecordStore(), [], bus);
      await fill(`${dir}/filler`);
      const big = (i: number) => ({
        origin: "Hill",
        diff: "+0.100000000",
        client: `c${i}`,
        location: "+1+1",
        time: "1." + "5".repeat(20_000),
        seq: i,
        via: -1,
      });
      p.saved(big(1));
      await assert.rejects(p.committed(), /space/i);
      // Loud, once (not once per retry), with its reason, in the log text, metrics and the feed.
      assert.equal(errors.length, 1);
      assert.equal(errors[0].reason, "disk-write");
      assert.match(errors[0].message, /cannot write .*Hill\.records: .*space.*1 record\(s\) owed/i);
      assert.match(formatLogLine(errors[0])!, / ERROR disk-write: cannot write /);
      assert.match(describe({ ...errors[0], id: 1 } as DashEvent), /^disk-write: cannot write /);
      const m = parseExposition(await metrics.render());
      assert.equal(m.value("herd_errors_total", { server: "Hill", reason: "disk-write" }), 1);
      assert.equal(m.value("herd_persist_commit_failures_total", { server: "Hill" }), 1);
      // While it fails, a commit that includes a new record fails too.
      p.saved(big(2));
      await assert.rejects(p.committed());
      // Space returns: the retry writes both, and a commit resolves.
      await Deno.remove(`${dir}/filler`);
      p.saved(big(3));
      const deadline = performance.now() + 10_000;
      for (;;) {
        const ok = await p.committed().then(() => true, () => false);
        if (ok) break;
        assert.ok(performance.now() < deadline, "still failing 10 s after space returned");
        // While failing, committed() rejects at once: let the retry timer run.
        await new Promise((r) => setTimeout(r, 20));
      }
      await p.close();
      const again = await openLogPersistence(dir, "Hill");
      const store = new RecordStore();
      await again.load(store, [], bus);
      await again.close();
      assert.deepEqual([...store.values()].map((r) => r.client).sort(), ["c1", "c2", "c3"]);
    } finally {
      await p.close().catch(() => {});
      metrics.close();
      await unmountTmpfs(dir);
    }
  },
);

tmpfsTest(
  "disk: a stop with records owed says so, writes no clean stop, and the next start takes a fresh epoch",
  async () => {
    // Found by an adversarial review (adv10b #5): the stop was silent, exit 0, "DOWN stopped".
    const dir = await Deno.makeTempDir({ prefix: "herd-tmpfs-" });
    await mountTmpfs(dir, "1m");
    const { bus, errors } = errorBus();
    const p = await openLogPersistence(dir, "Hill");
    try {
      const store = new RecordStore();
      await p.load(store, [], bus);
      const epoch = store.epoch;
      p.saved(storedRecord("c1", 1));
      await p.flush(); // on disk: c1
      await fill(`${dir}/filler`);
      p.saved(storedRecord("c2", 2, { time: "1." + "5".repeat(20_000) }));
      await p.close();
      const stop = errors.find((e) => /stopping with/.test(e.message));
      assert.ok(stop, `no stop error among ${errors.map((e) => e.message).join(" | ")}`);
      assert.match(stop.message, /stopping with 1 record\(s\) not on disk/);
      await Deno.remove(`${dir}/filler`);
      errors.length = 0;
      const again = await openLogPersistence(dir, "Hill");
      const back = new RecordStore();
      await again.load(back, [], bus);
      await again.close();
      assert.deepEqual([...back.values()].map((r) => r.client), ["c1"]);
      assert.deepEqual(errors.map((e) => e.reason), ["unclean-stop"]);
      assert.notEqual(back.epoch, epoch, "a fresh epoch: the neighbours resend what was owed");
    } finally {
      await p.close().catch(() => {});
      await unmountTmpfs(dir);
    }
  },
);

tmpfsTest(
  "disk: a failed write makes /healthz 503 with the reason and shows in /metrics, until it heals",
  async () => {
    const herd = await ProcessHerd.create({ topology: { Solo: [] } });
    await Deno.mkdir(herd.dataDir, { recursive: true });
    await mountTmpfs(herd.dataDir, "1m");
    const [opsPort] = leasePorts(1);
    const get = async (path: string) => {
      const res = await fetch(`http://127.0.0.1:${opsPort}${path}`);
      return { status: res.status, text: await res.text() };
    };
    try {
      await herd.start("Solo", ["--ops-port", String(opsPort)]);
      assert.equal((await get("/healthz")).status, 200);
      const filler = `${herd.dataDir}/filler`;
      await fill(filler);
      // Records keep coming; the group commit that should write them fails.
      let health = await get("/healthz");
      for (let i = 0; i < 100 && health.status === 200; i++) {
        await concurrentLines(herd.port("Solo"), [longIamat(`h.${i}`, 20_000)]);
        health = await get("/healthz");
      }
      assert.equal(health.status, 503, health.text);
      const body = JSON.parse(health.text);
      assert.equal(body.status, "unhealthy");
      assert.deepEqual(body.reasons, ["Solo cannot write its store"]);
      const m = parseExposition((await get("/metrics")).text);
      assert.ok(m.value("herd_persist_commit_failures_total", { server: "Solo" })! >= 1);
      assert.equal(m.value("herd_errors_total", { server: "Solo", reason: "disk-write" }), 1);
      const status = JSON.parse((await get("/status")).text);
      assert.equal(status.servers[0].name, "Solo");
      assert.ok(!JSON.stringify(body).includes("procs-test-secret"), "the secret leaked");

      // Space returns: the retry writes what is owed, and the process is healthy again.
      await Deno.remove(filler);
      const deadline = performance.now() + 15_000;
      while ((health = await get("/healthz")).status !== 200) {
        assert.ok(performance.now() < deadline, `still unhealthy: ${health.text}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await herd.close();
      await new Deno.Command("umount", { args: ["-l", herd.dataDir] }).output();
    }
  },
);

tmpfsTest(
  "disk: a full log disk drops and counts lines, says so once, and logging resumes when there is room",
  async () => {
    // Before: the first failed write closed the log file for good (until a SIGHUP), so one
    // moment of a full disk ended a server's log silently. (Found by the adversarial review.)
    const dir = await Deno.makeTempDir({ prefix: "herd-logdisk-" });
    await mountTmpfs(dir, "1m");
    const { bus, errors } = errorBus();
    const logs = await openLogs(bus, dir, ["Hill"]);
    const say = (line: string) =>
      bus.emit({ kind: "line.in", server: "Hill", conn: 1, line, t: Date.now() });
    try {
      say("IAMAT before +1+1 1");
      await logs.flush();
      const filler = `${dir}/filler`;
      await fill(filler);
      for (let i = 0; i < 2_000; i++) say(`IAMAT during${i} +1+1 ${"9".repeat(200)}`);
      await logs.flush();
      await new Promise((r) => setTimeout(r, 0));
      assert.deepEqual(errors.map((e) => e.reason), ["log-write"], "said once, as log-write");
      assert.match(errors[0].message, /cannot write log .*Hill\.log: .*space/i);
      await Deno.remove(filler);
      // The disk is tried again a second after the failure, not on every batch.
      await new Promise((r) => setTimeout(r, 1_100));
      say("IAMAT after.space.returned +1+1 1");
      await logs.flush();
      const text = await Deno.readTextFile(`${dir}/Hill.log`);
      assert.match(text, /IAMAT before /);
      assert.match(text, /IAMAT after\.space\.returned /, "logging resumed");
      const gap = text.match(/ERROR log-write: (\d+) log line\(s\) lost: cannot write log/);
      assert.ok(gap, "the log says what it lost");
      assert.ok(Number(gap[1]) >= 1 && Number(gap[1]) <= 2_001, `lost ${gap[1]}`);
      // Every line is whole: a write cut short by the full disk is ended before the gap line.
      for (const line of text.split("\n").filter((l) => l !== "")) {
        assert.match(line, /^\d{4}-\d\d-\d\dT[\d:.]+Z /, `a torn line: ${line.slice(0, 80)}`);
      }
      assert.deepEqual(errors.length, 1, "no second failure reported");
    } finally {
      await logs.close();
      await unmountTmpfs(dir);
    }
  },
);

/** The file-size limit (`ulimit -f`, KiB) of the next test: well above Deno's own cache files. */
const FILE_LIMIT_KIB = 256 * 1024;

Deno.test("disk: a log at the process's file-size limit (ulimit -f) costs log lines, never the process", async () => {
  const herd = await ProcessHerd.create({
    topology: { Hill: [] },
    wrap: () => ["bash", "-c", `ulimit -f ${FILE_LIMIT_KIB} && exec "$0" "$@"`],
    args: () => ["--sync-ack"],
  });
  try {
    // A log that already fills the limit but for a few lines (sparse: no disk used). Before,
    // the first write past the limit raised SIGXFSZ, whose default action ends the process
    // without a word: every client cut off, nothing logged.
    await Deno.mkdir(herd.logDir, { recursive: true });
    const logPath = `${herd.logDir}/Hill.log`;
    await Deno.writeFile(logPath, new Uint8Array());
    await Deno.truncate(logPath, FILE_LIMIT_KIB * 1024 - 300);
    const hill = await herd.start("Hill");
    const port = herd.port("Hill");
    const seconds = `${Math.floor(Date.now() / 1000)}`;
    const want = new Map<string, string>();
    for (let i = 0; i < 20; i++) {
      const c = `fsize.${i}`;
      want.set(c, await iamat(port, c, "+34.068930-118.445127", seconds));
    }
    // The log's failure is reported (one line), and the server goes on answering.
    await waitFor(() => hill.exited || /File too large/.test(hill.stderr), 10_000, "report");
    assert.ok(!hill.exited, `the server died: ${hill.stderr.slice(-500)}`);
    want.set("fsize.after", await iamat(port, "fsize.after", "+1+1", seconds));
    const known = await whatsatMany(port, [...want.keys()]);
    for (const [c, at] of want) assert.equal(known.get(c), at, c);
    // The records are on disk all the same (--sync-ack acknowledged them): a restart has them.
    await herd.restart("Hill");
    await assertHas(herd, "Hill", want);
  } finally {
    await herd.close();
  }
});
