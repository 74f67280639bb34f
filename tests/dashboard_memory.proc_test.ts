/**
 * What a client's long text costs the dashboard of `start` (adv10a #1, #2): the hub kept the
 * newest 10,000 events whole (an `invalid` event with its 64 KiB line), and GET /api/state and
 * GET / served records and events whole (2,000 records of 60 KiB locations: 120 MB built on the
 * herd's thread), so a client with no record at all, or a few unauthenticated GETs, took `start`
 * past V8's heap limit. The dashboard now shows at most DISPLAY_MAX bytes of any wire text. Each
 * test runs `start` with a 256 MiB heap so the limit, if any, comes in seconds.
 */

import assert from "node:assert/strict";
import { seedConfigJson } from "../servers/config.ts";
import { ServerProcess, stablePorts } from "./_helpers/procs.ts";
import { waitFor } from "./_helpers/net.ts";
import { ROOT, taskFlags } from "./_helpers/task_flags.ts";

const SECRET = "dashboard-memory-secret-0123";

/** Spawns `main.ts start` with `args` as `deno task start` would (cwd: the project). */
export function spawnStart(args: string[], env: Record<string, string> = {}): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...taskFlags("start"), "main.ts", "start", ...args],
    cwd: ROOT,
    env: { HERD_SECRET: SECRET, ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/**
 * Runs `fn` against the seed herd in one `start` process with the dashboard, its V8 heap made
 * small (256 MiB: a record budget of 64 MiB) so the heap limit is reached in seconds; then kills
 * it and removes its dir. `fn` gets the client ports (Hill first), the dashboard port and the
 * process.
 */
export async function withSmallHeapStart(
  fn: (ports: number[], dashboard: number, proc: ServerProcess) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "adv10a-" });
  const ports = stablePorts(6);
  await Deno.writeTextFile(`${dir}/herd.json`, JSON.stringify(seedConfigJson(ports)));
  const child = spawnStart(
    [
      ...["--config", `${dir}/herd.json`, "--log-dir", `${dir}/logs`, "--memory"],
      ...["--dashboard-port", String(ports[5])],
    ],
    { DENO_V8_FLAGS: "--max-old-space-size=256" },
  );
  const proc = new ServerProcess("Singleton", child);
  try {
    await proc.waitListening();
    await waitFor(() => proc.stdout.includes("Dashboard:"), 30_000, "the dashboard line");
    await fn(ports.slice(0, 5), ports[5], proc);
  } finally {
    await proc.kill();
    await Deno.remove(dir, { recursive: true });
  }
}

/** GETs `url` `n` times at once; each result is `<status> <bytes>` or `failed: <why>`. */
export function concurrentGets(url: string, n: number): Promise<string[]> {
  return Promise.all(
    Array.from({ length: n }, () =>
      fetch(url, { signal: AbortSignal.timeout(90_000) })
        .then(async (r) => `${r.status} ${(await r.arrayBuffer()).byteLength}`)
        .catch((err) => `failed: ${err}`)),
  );
}

/** The first lines of what `proc` printed on stderr (V8's out-of-memory report starts there). */
export function firstErrorLines(proc: ServerProcess): string {
  return proc.stderr.trim().split("\n").slice(0, 2).join(" | ");
}

const LINES = 6_000;
const GETS = 6;
const WINDOW = 50;
/** An invalid command just under the 64 KiB line limit. */
const line = (i: number) => `BOGUS${String(i).padStart(7, "0")} ${"z".repeat(65_000)}\n`;

/** Sends LINES long invalid lines in windows; returns how many `?` replies came back. */
async function flood(port: number): Promise<number> {
  const conn = await Deno.connect({ port });
  const enc = new TextEncoder();
  const buf = new Uint8Array(1 << 20);
  let replies = 0;
  try {
    for (let base = 0; base < LINES; base += WINDOW) {
      const text = Array.from({ length: WINDOW }, (_, k) => line(base + k)).join("");
      await conn.write(enc.encode(text));
      for (let seen = 0; seen < WINDOW;) {
        const got = await conn.read(buf);
        if (got === null) return replies;
        for (let i = 0; i < got; i++) if (buf[i] === 10) seen++, replies++;
      }
    }
  } catch {
    // reset: the process died
  } finally {
    try {
      conn.close();
    } catch {
      // closed
    }
  }
  return replies;
}

Deno.test("dashboard memory: long invalid lines (no records) do not take start to the heap limit", async () => {
  await withSmallHeapStart(async ([hill], _dashboard, proc) => {
    const replies = await flood(hill);
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(
      !proc.exited && replies === LINES,
      `start ended after ${replies} of ${LINES} invalid lines: ${firstErrorLines(proc)}`,
    );
  });
});

const FAT = "+34." + "1".repeat(60_000) + "-118.5";
const RECORDS = 800; // ~48 MB of records: under the 64 MiB budget a 256 MiB heap gets

/** Sends RECORDS distinct fat IAMATs in windows of 40; returns how many were answered `?`. */
async function fill(port: number): Promise<number> {
  const conn = await Deno.connect({ port });
  const enc = new TextEncoder();
  const buf = new Uint8Array(1 << 20);
  const t = Math.floor(Date.now() / 1000);
  let refused = 0;
  let atLineStart = true;
  try {
    for (let base = 0; base < RECORDS; base += 40) {
      const n = Math.min(RECORDS, base + 40) - base;
      const lines = Array.from({ length: n }, (_, k) => `IAMAT fat${base + k} ${FAT} ${t}\n`);
      await conn.write(enc.encode(lines.join("")));
      // Count reply lines (and those starting with `?`) without keeping the echoes.
      for (let seen = 0; seen < n;) {
        const got = await conn.read(buf);
        assert.ok(got !== null, "the server closed the connection");
        for (let i = 0; i < got; i++) {
          if (atLineStart && buf[i] === 63) refused++;
          atLineStart = buf[i] === 10;
          if (atLineStart) seen++;
        }
      }
    }
  } finally {
    conn.close();
  }
  return refused;
}

Deno.test("dashboard memory: concurrent GET /api/state over fat records does not end the start process", async () => {
  await withSmallHeapStart(async ([hill], dashboard, proc) => {
    const refused = await fill(hill);
    assert.equal(refused, 0, "the fat records fit the record budget");
    const replies = await concurrentGets(`http://127.0.0.1:${dashboard}/api/state`, GETS);
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(!proc.exited, `start ended under ${GETS} GET /api/state: ${firstErrorLines(proc)}`);
    // What a page shows of each 60 KiB location: ~300 bytes, so 800 records are well under 2 MB.
    for (const r of replies) {
      const [status, bytes] = r.split(" ");
      assert.ok(status === "200" && Number(bytes) < 2_000_000, `GET /api/state: ${r}`);
    }
    assert.ok(!proc.exited, `start ended under ${GETS} GET /api/state: ${firstErrorLines(proc)}`);
  });
});

const PAGE_LINES = 300;

/** Sends PAGE_LINES invalid lines of ~64 KiB of 0xff bytes; resolves once every `?` came back. */
async function invalidLines(port: number): Promise<void> {
  const conn = await Deno.connect({ port });
  const buf = new Uint8Array(1 << 20);
  try {
    for (let i = 0; i < PAGE_LINES; i++) {
      const bytes = new Uint8Array(65_010).fill(0xff);
      bytes.set(new TextEncoder().encode(`BOGUS${i} `));
      bytes[bytes.length - 1] = 10;
      await conn.write(bytes);
      for (let seen = 0; seen < 1;) {
        const got = await conn.read(buf);
        assert.ok(got !== null, "the server closed the connection");
        for (let k = 0; k < got; k++) if (buf[k] === 10) seen++;
      }
    }
  } finally {
    conn.close();
  }
}

Deno.test("dashboard memory: concurrent GET / after long invalid lines does not end the start process", async () => {
  await withSmallHeapStart(async ([hill], dashboard, proc) => {
    await invalidLines(hill);
    const replies = await concurrentGets(`http://127.0.0.1:${dashboard}/`, GETS);
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(!proc.exited, `start ended under ${GETS} GET /: ${firstErrorLines(proc)}`);
    // 200 events of ~300 bytes shown each (6 bytes a byte as JSON escapes at most): under 2 MB.
    for (const r of replies) {
      const [status, bytes] = r.split(" ");
      assert.ok(status === "200" && Number(bytes) < 2_000_000, `GET /: ${r}`);
    }
    assert.ok(!proc.exited, `start ended under ${GETS} GET /: ${firstErrorLines(proc)}`);
  });
});
