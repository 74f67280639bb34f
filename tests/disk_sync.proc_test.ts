/**
 * Durability of the group commit's `fdatasync` (servers/persist.ts, servers/disk_sync.ts), seen
 * from the kernel: under `--sync-ack`, each AT reply is written only after an `fdatasync` of the
 * server's record log (on a thread other than the event loop's) completed, and that `fdatasync`
 * began after the IAMAT was read. For a `server` process (one log: its own descriptor) and for
 * `start` (several logs: the process's sync thread, its own descriptors). `strace` watches the
 * real process; skipped loudly without strace, and failing under CI=true.
 */

import assert from "node:assert/strict";
import { iamat, ProcessHerd, PROCS_SECRET, stablePorts } from "./_helpers/procs.ts";
import { taskEnv, taskFlags } from "./_helpers/task_flags.ts";
import { waitFor } from "./_helpers/net.ts";

async function straceProblem(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("strace", { args: ["-V"], stdout: "null", stderr: "null" })
      .output();
    return out.success ? undefined : "strace -V failed";
  } catch (err) {
    return `cannot run strace: ${(err as Error).message}`;
  }
}

const NO_STRACE = await straceProblem();
const CI = Deno.env.get("CI") === "true";
if (NO_STRACE !== undefined) {
  console.error(
    `\n!!! SKIPPING the fdatasync-before-reply test: ${NO_STRACE}` +
      (CI ? " -- and CI=true, so it FAILS instead\n" : "\n"),
  );
}

/** One traced syscall, complete: its thread, name, text, and the lines it began and ended on. */
interface Call {
  tid: number;
  name: string;
  text: string;
  began: number;
  ended: number;
}

/** strace -f output → completed calls in completion order (unfinished/resumed joined). */
function completedCalls(trace: string): Call[] {
  const open = new Map<number, { text: string; began: number }>();
  const calls: Call[] = [];
  for (const [n, line] of trace.split("\n").entries()) {
    const m = /^(\d+)\s+(.*)$/.exec(line);
    if (m === null) continue;
    const tid = Number(m[1]);
    const rest = m[2];
    if (rest.endsWith("<unfinished ...>")) {
      open.set(tid, { text: rest, began: n });
      continue;
    }
    const resumed = /^<\.\.\. (\w+) resumed>/.exec(rest);
    const start = resumed !== null ? open.get(tid) : undefined;
    open.delete(tid);
    const name = resumed !== null ? resumed[1] : /^(\w+)\(/.exec(rest)?.[1];
    if (name === undefined) continue;
    calls.push({ tid, name, text: (start?.text ?? "") + rest, began: start?.began ?? n, ended: n });
  }
  return calls;
}

/**
 * Traces `pid` while `act` runs, then checks that each of `replies` (server, client) was written
 * after an fdatasync of `<server>.records` that began after that IAMAT was read.
 */
async function checkSyncedBeforeReplies(
  pid: number,
  act: () => Promise<void>,
  replies: [server: string, client: string][],
): Promise<void> {
  const out = await Deno.makeTempFile({ prefix: "herd-strace-" });
  const strace = new Deno.Command("strace", {
    args: ["-f", "-y", "-s", "300", "-e", "trace=fdatasync,recvfrom,sendto,read,write", "-p"]
      .concat([String(pid), "-o", out]),
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = strace.stderr.getReader();
  try {
    // strace says "Process N attached" per thread once it traces them.
    let said = "";
    while (!said.includes("attached")) {
      const { value, done } = await stderr.read();
      if (done) throw new Error(`strace ended: ${said}`);
      said += new TextDecoder().decode(value);
    }
    await new Promise((r) => setTimeout(r, 200));
    await act();
  } finally {
    strace.kill("SIGINT");
    stderr.releaseLock();
    await strace.stderr.cancel().catch(() => {});
    await strace.status;
  }
  const calls = completedCalls(await Deno.readTextFile(out));
  await Deno.remove(out);
  const at = (pred: (c: Call) => boolean, from: number) => {
    for (let i = from; i < calls.length; i++) if (pred(calls[i])) return i;
    return -1;
  };
  for (const [server, c] of replies) {
    const got = at((x) => /^(recvfrom|read)$/.test(x.name) && x.text.includes(`IAMAT ${c} `), 0);
    assert.ok(got >= 0, `the IAMAT of ${c} was read`);
    const reply = at((x) =>
      /^(sendto|write)$/.test(x.name) && x.text.includes(`"AT ${server} `) &&
      x.text.includes(` ${c} `), got);
    assert.ok(reply > got, `the reply to ${c} was written`);
    // The fdatasync that covers the record began after the read and completed before the
    // reply was written.
    const log = new RegExp(`/${server}\\.records>`);
    const synced = calls.slice(got + 1, reply).filter((x) =>
      x.name === "fdatasync" && log.test(x.text) && / = 0$/.test(x.text) &&
      x.began > calls[got].ended
    );
    assert.ok(
      synced.length > 0,
      `no fdatasync of ${server}.records between ${c}'s IAMAT and reply`,
    );
    assert.ok(synced.every((x) => x.tid !== pid), "the fdatasync ran off the event loop's thread");
  }
}

/** A test that needs strace: skipped (loudly, above) without it, failing there under CI=true. */
function straceTest(name: string, fn: () => Promise<void>): void {
  Deno.test({
    name,
    ignore: NO_STRACE !== undefined && !CI,
    async fn() {
      if (NO_STRACE !== undefined) throw new Error(`CI=true but ${NO_STRACE}`);
      await fn();
    },
  });
}

straceTest(
  "disk sync: a server process's --sync-ack replies follow an fdatasync of its log begun after the IAMAT",
  async () => {
    await using herd = await ProcessHerd.create({ topology: { Solo: [] } });
    await herd.start("Solo", ["--sync-ack"]);
    const clients = ["sync-a", "sync-b", "sync-c", "sync-d"];
    await checkSyncedBeforeReplies(herd.procs.get("Solo")!.pid, async () => {
      for (const [i, c] of clients.entries()) {
        await iamat(herd.port("Solo"), c, "+1+1", `${1000 + i}.5`);
      }
    }, clients.map((c) => ["Solo", c]));
  },
);

straceTest(
  "disk sync: in `start`, each server's --sync-ack replies follow an fdatasync of its own log",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "herd-disk-sync-" });
    const [a, b] = stablePorts(2);
    const config = `${dir}/herd.json`;
    await Deno.writeTextFile(
      config,
      JSON.stringify({ servers: { Ant: { port: a }, Bee: { port: b } } }),
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...taskFlags("start"), "main.ts", "start", "--config", config, "--log-dir"]
        .concat([`${dir}/logs`, "--data-dir", `${dir}/data`, "--no-dashboard", "--sync-ack"])
        .concat(["--places", "legacy", "--places-url", "http://127.0.0.1:1"]),
      cwd: new URL("..", import.meta.url).pathname,
      env: { ...await taskEnv("start"), HERD_SECRET: PROCS_SECRET, GOOGLE_PLACES_API_KEY: "k" },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    try {
      for (const port of [a, b]) await waitFor(() => listening(port), 30_000, `port ${port}`);
      await checkSyncedBeforeReplies(child.pid, async () => {
        for (let i = 0; i < 3; i++) {
          for (const [server, port] of [["Ant", a], ["Bee", b]] as const) {
            const c = `sync-${server}-${i}`;
            await iamat(port, c, "+1+1", `${1000 + i}.5`);
          }
        }
      }, [
        ...["Ant", "Bee"].flatMap((s) =>
          [0, 1, 2].map((i) => [s, `sync-${s}-${i}`] as [string, string])
        ),
      ]);
    } finally {
      // A herd that exited on its own says why on stderr: read it rather than fail on the kill.
      try {
        child.kill("SIGKILL");
      } catch { /* already exited */ }
      const err = await new Response(child.stderr).text();
      const status = await child.status;
      assert.ok(!err.includes("Uncaught"), err);
      assert.ok(status.signal === "SIGKILL", `the herd exited on its own (${status.code}): ${err}`);
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/** True when something listens on `port`. */
async function listening(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    return true;
  } catch {
    return false;
  }
}
