/**
 * Start-up figure: how soon a `main.ts server NAME` process accepts connections and answers, from
 * its spawn. A grader (the CS 131 TA script) starts a server and connects 0.3-0.5 s later without
 * waiting for any line, so the port must accept early, and whatever arrives before the server is
 * ready must be answered correctly once it is.
 *
 * Per variant, `runs` times: spawn the child, then connect to its port every 2 ms. Measured from
 * the spawn: `accept` (the first connect that succeeds: the kernel accepted it, so nothing is
 * refused from then on), `reply` (an IAMAT sent on that connection gets its AT line: everything up
 * to a complete answer) and `listening` (the stdout line tests and scripts wait for). Each with
 * the child's CPU time (user + system, all threads, /proc: 10 ms ticks) at that moment, which
 * hardly moves with the machine's load, unlike the wall figures.
 *
 * The floor, measured in the same run: bench/echo_server.ts `--reply at` (a bare Deno TCP server:
 * the runtime's own start plus one listen). Variants: `--places new` (a fake key: nothing is
 * fetched) and `--places offline` (the GeoNames index), each with `--memory` and with the record
 * log (`--data-dir`, holding `restored` records from an earlier run of the same server).
 *
 * Run alone: `deno run -A bench/startup.ts [--runs N] [--restored N] [--root DIR]` (prints one
 * JSON line); `--root` measures another checkout's main.ts (a before/after pair).
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  children,
  decoder,
  encoder,
  killChild,
  loadavg,
  processCpuMs,
  progress,
  ROOT,
  sleep,
} from "./common.ts";
import { makeHerdDir } from "./herd_proc.ts";

/** Spawn to one event: wall and CPU ms. */
export interface StartMark {
  wallMs: number;
  /** Every thread of the process (the offline index's Worker included). */
  cpuMs: number;
  /** The main thread only: what the JS that answers clients spent. */
  mainCpuMs: number;
}

/** CPU ms of a process's main thread so far (/proc; NaN when it is gone). */
function mainThreadCpuMs(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // USER_HZ
  } catch {
    return NaN;
  }
}

/** One variant's medians over its runs. */
export interface StartupVariant {
  name: string;
  runs: number;
  accept: StartMark;
  reply: StartMark;
  /** The floor has no such line: its READY line. */
  listening: StartMark;
  /** Connects refused before the first accepted one (summed over the runs). */
  refused: number;
}

/** The start-up figure. */
export interface StartupReport {
  variants: StartupVariant[];
  /** Records on disk for the `log` variants. */
  restored: number;
  loadavgStart: number;
  loadavgEnd: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)];
};

/**
 * Reads the child's stdout to its end; resolves `ready` (with the time) at the first line that
 * matches, or with NaN at the end without one.
 */
function watchStdout(child: Deno.ChildProcess, pattern: RegExp): Promise<number> {
  return new Promise((resolve) => {
    (async () => {
      let pending = "";
      for await (const chunk of child.stdout) {
        pending += decoder.decode(chunk);
        const lines = pending.split("\n");
        pending = lines.pop()!;
        if (lines.some((l) => pattern.test(l))) resolve(performance.now());
      }
    })().catch(() => {}).finally(() => resolve(NaN));
  });
}

/** A tracked Deno child (killed on any exit path) whose stdout is read here. */
function spawnDeno(root: string, args: string[], env: Record<string, string>): Deno.ChildProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  children.add(child);
  return child;
}

/** One spawn: the three marks and the refusals before the first accept. */
interface Once {
  accept: StartMark;
  reply: StartMark;
  listening: StartMark;
  refused: number;
}

async function once(
  root: string,
  args: string[],
  port: number,
  ready: RegExp,
  env: Record<string, string>,
): Promise<Once> {
  const t0 = performance.now();
  const child = spawnDeno(root, args, env);
  const marks = (t: number): StartMark => ({
    wallMs: t - t0,
    cpuMs: processCpuMs(child.pid) ?? NaN,
    mainCpuMs: mainThreadCpuMs(child.pid),
  });
  let listening: StartMark | undefined;
  const readyAt = watchStdout(child, ready).then((t) => {
    if (!Number.isNaN(t)) listening = marks(t);
  });
  try {
    let refused = 0;
    let conn: Deno.TcpConn | undefined;
    const deadline = t0 + 60_000;
    while (conn === undefined) {
      try {
        conn = await Deno.connect({ hostname: "127.0.0.1", port });
      } catch {
        if (performance.now() > deadline) throw new Error(`port ${port} never accepted`);
        refused++;
        await sleep(2);
      }
    }
    const accept = marks(performance.now());
    const now = Date.now() / 1000;
    await conn.write(encoder.encode(`IAMAT startup.probe +34.068930-118.445127 ${now}\n`));
    const buf = new Uint8Array(4096);
    let text = "";
    while (!text.includes("\n")) {
      const n = await conn.read(buf);
      if (n === null) throw new Error(`port ${port} closed before replying`);
      text += decoder.decode(buf.subarray(0, n));
    }
    const reply = marks(performance.now());
    conn.close();
    if (!text.startsWith("AT ")) throw new Error(`unexpected reply ${JSON.stringify(text)}`);
    while (listening === undefined && performance.now() < deadline) await sleep(2);
    if (listening === undefined) throw new Error("no ready line");
    return { accept, reply, listening, refused };
  } finally {
    await killChild(child);
    await readyAt.catch(() => {});
  }
}

/** Runs the start-up figure. */
export async function benchStartup(
  runs = 5,
  restored = 20_000,
  root = ROOT,
): Promise<StartupReport> {
  const loadavgStart = loadavg();
  const dir = await makeHerdDir(27700);
  const port = dir.ports.Hill;
  const env = { HERD_SECRET: dir.secret, GOOGLE_PLACES_API_KEY: "startup-bench-fake-key" };
  const server = (places: string, log: boolean) => [
    "run",
    "-A",
    "main.ts",
    "server",
    "Hill",
    "--config",
    dir.config,
    "--log-dir",
    `${dir.work}/logs`,
    ...(log ? ["--data-dir", `${dir.work}/data`] : ["--memory"]),
    "--places",
    places,
    // An unreachable Google: the bench never calls it (only IAMATs are sent).
    ...(places === "new" ? ["--places-url", "http://127.0.0.1:9"] : []),
  ];
  const variants: [string, string[], RegExp][] = [
    ["floor (echo_server.ts)", [
      "run",
      "-A",
      "bench/echo_server.ts",
      "--port",
      String(port),
      "--reply",
      "at",
    ], /^READY /],
    ["server --places new --memory", server("new", false), /listening on/],
    ["server --places offline --memory", server("offline", false), /listening on/],
    ["server --places new (record log)", server("new", true), /listening on/],
    ["server --places offline (record log)", server("offline", true), /listening on/],
  ];
  try {
    if (restored > 0) await fillLog(root, server("offline", true), env, port, restored);
    const out: StartupVariant[] = [];
    for (const [name, args, ready] of variants) {
      const got: Once[] = [];
      for (let i = 0; i < runs; i++) got.push(await once(root, args, port, ready, env));
      const mark = (k: "accept" | "reply" | "listening"): StartMark => ({
        wallMs: Math.round(median(got.map((g) => g[k].wallMs))),
        cpuMs: Math.round(median(got.map((g) => g[k].cpuMs))),
        mainCpuMs: Math.round(median(got.map((g) => g[k].mainCpuMs))),
      });
      const v = {
        name,
        runs,
        accept: mark("accept"),
        reply: mark("reply"),
        listening: mark("listening"),
        refused: got.reduce((a, g) => a + g.refused, 0),
      };
      const f = (m: StartMark) => `${m.wallMs} ms (CPU ${m.cpuMs}, main ${m.mainCpuMs})`;
      progress(
        `[startup] ${name}: accept ${f(v.accept)}, reply ${f(v.reply)}, ` +
          `listening ${f(v.listening)}`,
      );
      out.push(v);
    }
    return { variants: out, restored, loadavgStart, loadavgEnd: loadavg() };
  } finally {
    await dir.remove();
  }
}

/** Gives Hill's record log `count` records: one run of `args` (a server) that takes them. */
async function fillLog(
  root: string,
  args: string[],
  env: Record<string, string>,
  port: number,
  count: number,
): Promise<void> {
  const child = spawnDeno(root, args, env);
  try {
    if (Number.isNaN(await watchStdout(child, /listening on/))) {
      throw new Error("fill: the server exited before listening");
    }
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const now = Date.now() / 1000;
    let text = "";
    for (let i = 0; i < count; i++) {
      text += `IAMAT startup.fill.${i} +34.068930-118.445127 ${now}\n`;
    }
    const reading = (async () => {
      let lines = 0;
      const buf = new Uint8Array(1 << 16);
      while (lines < count) {
        const n = await conn.read(buf);
        if (n === null) break;
        for (let i = 0; i < n; i++) if (buf[i] === 0x0a) lines++;
      }
      return lines;
    })();
    const bytes = encoder.encode(text);
    for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
    const lines = await reading;
    conn.close();
    if (lines < count) throw new Error(`fill: ${lines} of ${count} replies`);
  } finally {
    await killChild(child);
  }
}

/**
 * The figure as markdown (summary.md): per variant the medians, and each as a ratio to the floor's
 * CPU to accept.
 */
export function startupMarkdown(r: StartupReport): string[] {
  const floor = r.variants[0];
  const x = (m: StartMark) =>
    `${m.wallMs} / ${m.cpuMs} / ${m.mainCpuMs} (${
      (m.mainCpuMs / floor.accept.mainCpuMs).toFixed(1)
    }×)`;
  return [
    `## Start-up: spawn to accept, to the first reply, to "listening"`,
    "",
    `Medians of ${floor.runs} runs, wall ms / CPU ms of all threads / CPU ms of the main thread ` +
    `(that as a multiple of the floor's to accept); the record-log variants restore ` +
    `${r.restored} records. 1-min load average ` +
    `${r.loadavgStart} → ${r.loadavgEnd}: compare CPU, not wall.`,
    "",
    "| variant | accept | first IAMAT reply | listening | refused connects |",
    "|---|---|---|---|---|",
    ...r.variants.map((v) =>
      `| ${v.name} | ${x(v.accept)} | ${x(v.reply)} | ${x(v.listening)} | ${v.refused} |`
    ),
    "",
  ];
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runs: { type: "string", default: "5" },
      restored: { type: "string", default: "20000" },
      root: { type: "string", default: ROOT },
    },
  });
  try {
    const report = await benchStartup(
      Number(values.runs),
      Number(values.restored),
      values.root.endsWith("/") ? values.root : `${values.root}/`,
    );
    console.log(JSON.stringify(report));
  } finally {
    for (const c of [...children]) await killChild(c);
  }
}
