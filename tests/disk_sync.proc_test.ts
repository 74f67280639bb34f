/**
 * Durability through the sync thread (servers/disk_sync.ts), seen from the kernel: under
 * `--sync-ack`, each AT reply is written only after an `fdatasync` of the server's record log
 * (on a thread other than the event loop's) completed, and that `fdatasync` started after the
 * IAMAT was read. `strace` watches a real server process; skipped loudly without strace, and
 * failing under CI=true.
 */

import assert from "node:assert/strict";
import { iamat, ProcessHerd } from "./_helpers/procs.ts";

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

Deno.test({
  name:
    "disk sync: under --sync-ack, each reply follows an fdatasync of the log that began after its IAMAT",
  ignore: NO_STRACE !== undefined && !CI,
  async fn() {
    if (NO_STRACE !== undefined) throw new Error(`CI=true but ${NO_STRACE}`);
    await using herd = await ProcessHerd.create({ topology: { Solo: [] } });
    await herd.start("Solo", ["--sync-ack"]);
    const pid = herd.procs.get("Solo")!.pid;
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
      const clients = ["sync-a", "sync-b", "sync-c", "sync-d"];
      for (const [i, c] of clients.entries()) {
        await iamat(herd.port("Solo"), c, "+1+1", `${1000 + i}.5`);
      }
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
    for (const c of ["sync-a", "sync-b", "sync-c", "sync-d"]) {
      const got = at((x) => /^(recvfrom|read)$/.test(x.name) && x.text.includes(`IAMAT ${c} `), 0);
      assert.ok(got >= 0, `the IAMAT of ${c} was read`);
      const reply = at((x) =>
        /^(sendto|write)$/.test(x.name) && x.text.includes(`"AT Solo `) &&
        x.text.includes(` ${c} `), got);
      assert.ok(reply > got, `the reply to ${c} was written`);
      // The fdatasync that covers the record began after the read and completed before the
      // reply was written.
      const synced = calls.slice(got + 1, reply).filter((x) =>
        x.name === "fdatasync" && /Solo\.records>/.test(x.text) && / = 0$/.test(x.text) &&
        x.began > calls[got].ended
      );
      assert.ok(synced.length > 0, `no fdatasync of Solo.records between ${c}'s IAMAT and reply`);
      assert.ok(
        synced.every((x) => x.tid !== pid),
        "the fdatasync ran off the event loop's thread",
      );
    }
  },
});
