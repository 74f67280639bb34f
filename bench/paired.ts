/**
 * Paired A/B runs: two herds (`main.ts start`), each from its own source tree or with its own
 * flags, loaded AT THE SAME TIME by identical bench/load.ts processes, for several rounds. On a
 * shared machine absolute figures drift by a third from one minute to the next; two herds loaded
 * together see the same drift, so their ratio is what a change is judged by.
 *
 *     deno run -A bench/paired.ts --a /tmp/base --b . [--rounds 5] [--connections 32] \
 *       [--duration-ms 4000] [--warmup-ms 500] [--prewarm-ms 0] [--persist] [--flags="--receipt-wait-ms 0"] \
 *       [--a-flags ...] [--b-flags ...] [--a-deno-flags ...] [--b-deno-flags ...] [--rate R] [--solo]
 *
 * `--a-deno-flags` / `--b-deno-flags` go to that herd's `deno run` (e.g. `--v8-flags=...`).
 *
 * `--prewarm-ms N` loads both herds at once for N ms, not measured, before round 1: a herd's
 * first ~20 s of load include V8 compiling its hot code on worker threads (a fifth of five
 * `server` processes' CPU per IAMAT in the first seconds), so without it the early rounds
 * measure the JIT as much as the herd (BENCHMARKS.md, "Five processes of 2026-11-28").
 *
 * Each round reports, per herd: IAMAT throughput, p50/p99 (ms, by the client), and the herd
 * process's CPU time (user + system, from /proc/PID/stat) over the measured window divided by
 * the requests answered in it: CPU µs per IAMAT, which the machine's load moves far less than
 * throughput. Also, from the scheduler (`/proc/PID/task/PID/schedstat`, `status`), the herd's
 * JavaScript thread over the window: the share on a CPU (busy), the share runnable but waiting
 * for a CPU (run queue), and preemptions per IAMAT. A p99 that moves while CPU per IAMAT stays is
 * read against these: a thread near saturation, or one that waited for the CPU, queues requests. `--rate R` offers R IAMATs/s (open loop) instead of the closed loop: both herds
 * then do the same work, and the CPU per IAMAT compares them without the feedback of a closed
 * loop (the herd that falls behind gets less load, and less CPU). `--solo` loads them one after the other instead (alternating which goes first).
 *
 * `--procs` runs each herd as five `main.ts server NAME` processes instead of one `start`; the CPU
 * is then summed over the five, and each process's share is reported too. `--syscalls` counts, over
 * the measured window, the syscalls of each herd's processes (every thread) with `perf stat` on
 * the kernel's syscall tracepoints (a counter in the kernel: the herd runs at full speed, unlike
 * under `strace`), per IAMAT: all of them, and `epoll_wait` (event-loop wake-ups), `sendto`,
 * `recvfrom`, `write` (and `write_eventfd`, those to the runtime's wake-up eventfd), `futex`,
 * `mmap`, `munmap`, `madvise`.
 * On a loaded box the first herd (`--a`) is favoured (the same tree both ways gave B/A 0.52-1.10,
 * B's CPU per IAMAT higher in 4 of 4 rounds at load 11): run both orders and read them together.
 * Prints one JSON line at the end.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { HERD_NAMES, herdConfig, stablePortBase } from "./common.ts";
import type { LoadResult } from "./load.ts";
import { randomHex, serverState } from "./observer.ts";

/** The command line, or one line on stderr and exit 2 (as bench/run.ts). */
function flags() {
  try {
    return parseArgs({ args: Deno.args, options: OPTIONS }).values;
  } catch (err) {
    // parseArgs' message runs to several sentences; the first says what is wrong.
    const what = String((err as Error).message).split(/\.(?:\s|$)/)[0];
    console.error(
      `paired: ${what} (a value that starts with a dash: --b-flags="--receipt-wait-ms 0")`,
    );
    Deno.exit(2);
  }
}

const OPTIONS = {
  a: { type: "string", default: "." },
  b: { type: "string", default: "." },
  rounds: { type: "string", default: "5" },
  connections: { type: "string", default: "32" },
  "duration-ms": { type: "string", default: "4000" },
  "warmup-ms": { type: "string", default: "500" },
  "prewarm-ms": { type: "string", default: "0" },
  persist: { type: "boolean", default: false },
  flags: { type: "string", default: "" },
  "a-flags": { type: "string", default: "" },
  "b-flags": { type: "string", default: "" },
  "a-deno-flags": { type: "string", default: "" },
  "b-deno-flags": { type: "string", default: "" },
  solo: { type: "boolean", default: false },
  rate: { type: "string", default: "0" },
  procs: { type: "boolean", default: false },
  syscalls: { type: "boolean", default: false },
} as const;
const v = flags();

const split = (s: string) => s.split(/\s+/).filter((x) => x !== "");
const rounds = Number(v.rounds);
const connections = Number(v.connections);
const durationMs = Number(v["duration-ms"]);
const warmupMs = Number(v["warmup-ms"]);
const prewarmMs = Number(v["prewarm-ms"]);
if (!Number.isSafeInteger(prewarmMs) || prewarmMs < 0) {
  console.error(`paired: --prewarm-ms wants an integer >= 0, got '${v["prewarm-ms"]}'`);
  Deno.exit(2);
}
const TICK = 100; // USER_HZ: /proc/PID/stat counts CPU time in 1/100 s
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Herd {
  label: string;
  tree: string;
  /** One `start`, or five `server` processes (`--procs`, in HERD_NAMES order). */
  children: Deno.ChildProcess[];
  ports: Record<string, number>;
  work: string;
}

const herds: Herd[] = [];

/**
 * The JavaScript thread of `pid` (its main thread, tid = pid) as the scheduler saw it: ns on a
 * CPU, ns runnable but waiting for one (`/proc/.../schedstat`), and the times it was preempted
 * (`nonvoluntary_ctxt_switches`). Tells "the herd was slow" from "the herd was not on a CPU".
 */
function jsThread(pid: number): { runNs: number; waitNs: number; preempted: number } {
  try {
    const [run, wait] = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/schedstat`).split(" ");
    const status = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/status`);
    const preempted = Number(/nonvoluntary_ctxt_switches:\s*(\d+)/.exec(status)?.[1] ?? 0);
    return { runNs: Number(run), waitNs: Number(wait), preempted };
  } catch {
    // A kernel without schedstats (or a process gone): the columns read 0, the round goes on.
    return { runNs: 0, waitNs: 0, preempted: 0 };
  }
}

function cpuTicks(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]); // utime, stime
}

async function launch(
  label: string,
  tree: string,
  extra: string[],
  denoFlags: string[],
  from: number,
): Promise<Herd> {
  const base = stablePortBase(5, from);
  const work = await Deno.makeTempDir({ prefix: `herd-paired-${label}-` });
  await Deno.writeTextFile(`${work}/herd.json`, JSON.stringify(herdConfig(base)));
  const secret = randomHex(32);
  const root = await Deno.realPath(tree);
  const args = (cmd: string[]) => [
    "run",
    "-A",
    ...denoFlags,
    "--config",
    `${root}/deno.json`,
    `${root}/main.ts`,
    ...cmd,
    "--config",
    `${work}/herd.json`,
    "--log-dir",
    `${work}/logs`,
    ...(v.persist ? ["--data-dir", `${work}/data`] : ["--memory"]),
    // Only `start` serves a dashboard (and takes its flags); `server` refuses them.
    ...(cmd[0] === "start" ? ["--no-dashboard"] : []),
    "--places",
    "offline",
    ...split(v.flags),
    ...extra,
  ];
  const spawn = (cmd: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: args(cmd),
      cwd: root,
      env: { HERD_SECRET: secret },
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
    }).spawn();
  const children = v.procs ? HERD_NAMES.map((n) => spawn(["server", n])) : [spawn(["start"])];
  const ports = Object.fromEntries(HERD_NAMES.map((n, i) => [n, base + i]));
  const herd = { label, tree: root, children, ports, work };
  herds.push(herd);
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const states = await Promise.all(
      HERD_NAMES.map((n) => serverState(ports[n], n, secret).catch(() => null)),
    );
    if (states.every((s) => s !== null && s.links.every((l) => l.up))) return herd;
    await sleep(200);
  }
  throw new Error(`herd ${label} (${root}) did not come up with every link`);
}

async function load(
  port: number,
  startAt: number,
  tag: string,
  window = { durationMs, warmupMs },
): Promise<LoadResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./load.ts", import.meta.url).pathname,
      "--port",
      String(port),
      "--connections",
      String(connections),
      "--duration-ms",
      String(window.durationMs),
      "--warmup-ms",
      String(window.warmupMs),
      "--start-at",
      String(startAt),
      "--tag",
      tag,
      ...(Number(v.rate) > 0 ? ["--rate", v.rate] : []),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
}

interface Sample {
  throughput: number;
  p50: number;
  p99: number;
  cpuUsPerReq: number;
  /** With `--procs`: each process's CPU µs per IAMAT, in HERD_NAMES order. */
  cpuUsPerReqByProc?: number[];
  /**
   * The herd's JavaScript thread(s) over the window (summed over the processes with `--procs`):
   * share of the window on a CPU, share runnable but waiting for one, preemptions per IAMAT.
   */
  jsBusy: number;
  jsRunQueue: number;
  jsPreemptedPerReq: number;
  /** With `--syscalls`: syscalls per IAMAT over every process of the herd, by name. */
  syscallsPerReq?: Record<string, number>;
  errors: number;
}

/** The syscalls `--syscalls` counts one by one (besides the total). */
const SYSCALLS = [
  "epoll_wait",
  "epoll_pwait",
  "sendto",
  "recvfrom",
  "write",
  "futex",
  "mmap",
  "munmap",
  "madvise",
];

/**
 * Counts syscalls of `pids` (all their threads) for `ms` with `perf stat` on the syscall
 * tracepoints; name → count, "all" for every syscall.
 */
async function countSyscalls(pids: number[], ms: number): Promise<Record<string, number>> {
  const events = ["raw_syscalls:sys_enter", ...SYSCALLS.map((n) => `syscalls:sys_enter_${n}`)];
  // The runtime's own wake-ups (a timer armed or fired, work from another thread) are writes to
  // its eventfd, the first descriptor it opens (4): counted apart when every process has it there.
  const eventfd = pids.every((p) => {
    try {
      return Deno.readLinkSync(`/proc/${p}/fd/4`) === "anon_inode:[eventfd]";
    } catch {
      return false;
    }
  });
  const out = await new Deno.Command("perf", {
    args: [
      "stat",
      "-x",
      ",",
      ...events.flatMap((e) => ["-e", e]),
      ...(eventfd ? ["-e", "syscalls:sys_enter_write", "--filter", "fd == 4"] : []),
      "-p",
      pids.join(","),
      "--",
      "sleep",
      String(ms / 1000),
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  const counts: Record<string, number> = {};
  // CSV lines: count,unit,event,... in the order asked (the filtered write comes last).
  for (const line of new TextDecoder().decode(out.stderr).split("\n")) {
    const [count, , event] = line.split(",");
    if (event === undefined || !/^\d+$/.test(count)) continue;
    const name = event === "raw_syscalls:sys_enter" ? "all" : event.replace(/^.*sys_enter_/, "");
    counts[name in counts ? `${name}_eventfd` : name] = Number(count);
  }
  return counts;
}

/** Loads `herd` from `startAt`, sampling its CPU time over the measured window. */
async function measure(herd: Herd, startAt: number, tag: string): Promise<Sample> {
  const pids = herd.children.map((c) => c.pid);
  const from = startAt + warmupMs;
  const to = from + durationMs;
  const cpu = (async () => {
    await sleep(from - Date.now());
    const c0 = pids.map(cpuTicks);
    const j0 = pids.map(jsThread), t0 = performance.now();
    const syscalls = v.syscalls ? countSyscalls(pids, to - Date.now()) : undefined;
    await sleep(to - Date.now());
    const windowNs = (performance.now() - t0) * 1e6;
    const js = pids.map(jsThread).reduce((sum, j, i) => ({
      runNs: sum.runNs + j.runNs - j0[i].runNs,
      waitNs: sum.waitNs + j.waitNs - j0[i].waitNs,
      preempted: sum.preempted + j.preempted - j0[i].preempted,
    }), { runNs: 0, waitNs: 0, preempted: 0 });
    return {
      ticks: pids.map((p, i) => cpuTicks(p) - c0[i]),
      syscalls: await syscalls,
      js: { ...js, windowNs },
    };
  })();
  const [r, { ticks, syscalls, js }] = await Promise.all([
    load(herd.ports.Hill, startAt, tag),
    cpu,
  ]);
  const perReq = (n: number, scale: number) =>
    r.requests > 0 ? Math.round(n * scale / r.requests * 1000) / 1000 : 0;
  const cpuUs = (t: number) => Math.round(perReq(t, 1e6 / TICK) * 10) / 10;
  return {
    throughput: Math.round(r.throughput),
    p50: r.p50,
    p99: r.p99,
    cpuUsPerReq: cpuUs(ticks.reduce((a, b) => a + b, 0)),
    ...(v.procs ? { cpuUsPerReqByProc: ticks.map(cpuUs) } : {}),
    jsBusy: Math.round(js.runNs / js.windowNs * 1000) / 1000,
    jsRunQueue: Math.round(js.waitNs / js.windowNs * 1000) / 1000,
    jsPreemptedPerReq: perReq(js.preempted, 1),
    ...(syscalls
      ? {
        syscallsPerReq: Object.fromEntries(
          Object.entries(syscalls).map(([k, n]) => [k, perReq(n, 1)]),
        ),
      }
      : {}),
    errors: r.errors,
  };
}

const pct = (x: number) => `${Math.round(x * 100)}%`;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

try {
  const a = await launch("A", v.a, split(v["a-flags"]), split(v["a-deno-flags"]), 21000);
  const b = await launch("B", v.b, split(v["b-flags"]), split(v["b-deno-flags"]), 21100);
  console.error(
    `A: ${a.tree} ${v["a-deno-flags"]} ${v["a-flags"]}\nB: ${b.tree} ${v["b-deno-flags"]} ${
      v["b-flags"]
    }`,
  );
  if (prewarmMs > 0) {
    // Unmeasured load on both herds at once before round 1: V8 compiles the hot code on its
    // worker threads for the first ~10-20 s of load, and five processes each warm up on a fifth
    // of the work (BENCHMARKS.md, "Five processes of 2026-11-28").
    console.error(`prewarm: ${prewarmMs} ms of load on both herds, not measured`);
    const startAt = Date.now() + 1000;
    const window = { durationMs: prewarmMs, warmupMs: 0 };
    await Promise.all(
      [a, b].map((h, i) => load(h.ports.Hill, startAt, `pw${i}x${Date.now() % 1e6}`, window)),
    );
  }
  const results: { a: Sample; b: Sample; load: number }[] = [];
  for (let i = 0; i < rounds; i++) {
    const load1 = Math.round(Deno.loadavg()[0] * 10) / 10;
    const startAt = Date.now() + 1000;
    const tag = `r${i}x${Date.now() % 1e6}`;
    let sa: Sample, sb: Sample;
    if (v.solo) {
      // One after the other (alternating which goes first), for when running both at once is
      // itself the question.
      if (i % 2 === 0) {
        sa = await measure(a, startAt, tag + "a");
        sb = await measure(b, Date.now() + 1000, tag + "b");
      } else {
        sb = await measure(b, startAt, tag + "b");
        sa = await measure(a, Date.now() + 1000, tag + "a");
      }
    } else {
      [sa, sb] = await Promise.all([
        measure(a, startAt, tag + "a"),
        measure(b, startAt, tag + "b"),
      ]);
    }
    results.push({ a: sa, b: sb, load: load1 });
    console.error(
      `round ${i + 1} (load ${load1}): A ${sa.throughput} req/s ${sa.p50}/${sa.p99} ms ` +
        `${sa.cpuUsPerReq} µs/req | B ${sb.throughput} req/s ${sb.p50}/${sb.p99} ms ` +
        `${sb.cpuUsPerReq} µs/req | B/A ${(sb.throughput / sa.throughput).toFixed(2)}`,
    );
    const sched = (x: Sample) =>
      `JS thread busy ${pct(x.jsBusy)}, waiting for a CPU ${pct(x.jsRunQueue)}, ` +
      `preempted ${x.jsPreemptedPerReq.toFixed(2)}/req`;
    console.error(`  A: ${sched(sa)} | B: ${sched(sb)}`);
    if (v.procs) {
      console.error(`  µs/req by process: A ${sa.cpuUsPerReqByProc} | B ${sb.cpuUsPerReqByProc}`);
    }
    if (v.syscalls) {
      const show = (c?: Record<string, number>) =>
        Object.entries(c ?? {}).map(([k, n]) => `${k} ${n.toFixed(2)}`).join(" ");
      console.error(`  syscalls/req A: ${show(sa.syscallsPerReq)}`);
      console.error(`  syscalls/req B: ${show(sb.syscallsPerReq)}`);
    }
  }
  type Scalar =
    | "throughput"
    | "p50"
    | "p99"
    | "cpuUsPerReq"
    | "jsBusy"
    | "jsRunQueue"
    | "jsPreemptedPerReq";
  const pick = (side: "a" | "b", k: Scalar) => median(results.map((r) => r[side][k]));
  // Per-IAMAT syscall counts, the median of each over the rounds.
  const pickCalls = (side: "a" | "b") =>
    v.syscalls
      ? Object.fromEntries(
        Object.keys(results[0]?.[side].syscallsPerReq ?? {}).map((k) => [
          k,
          median(results.map((r) => r[side].syscallsPerReq?.[k] ?? 0)),
        ]),
      )
      : undefined;
  const summary = {
    a: { tree: a.tree, flags: v["a-flags"], denoFlags: v["a-deno-flags"] },
    b: { tree: b.tree, flags: v["b-flags"], denoFlags: v["b-deno-flags"] },
    common: {
      flags: v.flags,
      persist: v.persist,
      connections,
      durationMs,
      prewarmMs,
      rounds,
      rate: Number(v.rate),
      solo: v.solo,
      procs: v.procs,
    },
    rounds: results,
    median: {
      a: { throughput: pick("a", "throughput"), p50: pick("a", "p50"), p99: pick("a", "p99") },
      b: { throughput: pick("b", "throughput"), p50: pick("b", "p50"), p99: pick("b", "p99") },
      aCpuUsPerReq: pick("a", "cpuUsPerReq"),
      bCpuUsPerReq: pick("b", "cpuUsPerReq"),
      aJs: {
        busy: pick("a", "jsBusy"),
        runQueue: pick("a", "jsRunQueue"),
        preemptedPerReq: pick("a", "jsPreemptedPerReq"),
      },
      bJs: {
        busy: pick("b", "jsBusy"),
        runQueue: pick("b", "jsRunQueue"),
        preemptedPerReq: pick("b", "jsPreemptedPerReq"),
      },
      throughputRatio: median(results.map((r) => r.b.throughput / r.a.throughput)),
      aSyscallsPerReq: pickCalls("a"),
      bSyscallsPerReq: pickCalls("b"),
    },
  };
  console.log(JSON.stringify(summary));
} finally {
  for (const h of herds) {
    for (const child of h.children) {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
    }
    await Deno.remove(h.work, { recursive: true }).catch(() => {});
  }
}
