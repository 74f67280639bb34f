/**
 * PROTOTYPE tool (branch `threads`, reverted in the next commit): alternating solo runs of
 * `main.ts start --data-dir` with `HERD_FRONT=0` (base) and `HERD_FRONT=1` (front thread) under
 * bench/loadgen.c, 32 connections to Hill, 1 s warm-up + 4 s measured; CPU per IAMAT of each
 * thread of the herd process from /proc/PID/task over the measured window.
 *
 *     deno run -A --config deno.json bench/threads_alt.ts . ROUNDS CONNECTIONS
 *     (env QUIET=1: wait up to 90 s for <= 2 runnable tasks before each pair)
 *
 * @module
 */
import { buildNative } from "./native.ts";
import { freePortBase, herdConfig } from "./common.ts";
const TREE = await Deno.realPath(Deno.args[0] ?? ".");
const rounds = Number(Deno.args[1] ?? 4);
const conns = Number(Deno.args[2] ?? 32);
const variants = (Deno.env.get("VARIANTS") ?? "base,front").split(",");
const extra = (Deno.env.get("EXTRA") ?? "").split(" ").filter((x) => x);
const bin = await buildNative("loadgen");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
function threads(pid: number) {
  const out: Record<string, number> = {};
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/stat`);
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const key = t.name === String(pid) ? "main" : comm;
      out[key] = (out[key] ?? 0) + Number(f[11]) + Number(f[12]);
    } catch { /* gone */ }
  }
  return out;
}
const results: Record<string, number[]> = {};
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? variants : [...variants].reverse();
  if (Deno.env.get("QUIET")) {
    const until = Date.now() + 90_000;
    let calm = 0;
    while (Date.now() < until && calm < 5) {
      const running = Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[3].split("/")[0]);
      calm = running <= 2 ? calm + 1 : 0;
      await sleep(100);
    }
    console.log(`quiet wait: calm ${calm}`);
  }
  for (const v of order) {
    const base = freePortBase(5, 34000 + Math.floor(Math.random() * 2000));
    const work = await Deno.makeTempDir({ prefix: "alt-" });
    await Deno.writeTextFile(`${work}/herd.json`, JSON.stringify(herdConfig(base)));
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        ...(Deno.env.get("DENOFLAGS") ?? "").split(" ").filter((x) => x),
        "main.ts",
        "start",
        "--config",
        `${work}/herd.json`,
        "--log-dir",
        `${work}/logs`,
        "--data-dir",
        `${work}/data`,
        "--no-dashboard",
        "--places",
        "offline",
        ...extra,
      ],
      cwd: TREE,
      env: { HERD_SECRET: "x".repeat(64), HERD_FRONT: v === "front" ? "1" : "0" },
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while (!seen.includes("Logs:")) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += value;
    }
    (async () => {
      while (!(await reader.read()).done);
    })();
    await sleep(500);
    const startAt = Date.now() + 300, warm = 1000, dur = 4000;
    const lg = new Deno.Command(bin, {
      args: [
        "--port",
        String(base),
        "--connections",
        String(conns),
        "--duration-ms",
        String(dur),
        "--warmup-ms",
        String(warm),
        "--start-at",
        String(startAt),
        "--line",
        "IAMAT b{c}.alt.bench +34.068930-118.445127 {t}",
      ],
      stdout: "piped",
    }).output();
    await sleep(startAt + warm - Date.now());
    const a = threads(child.pid);
    const la = Deno.readTextFileSync("/proc/loadavg").split(" ")[0];
    await sleep(dur);
    const b = threads(child.pid);
    const res = JSON.parse(new TextDecoder().decode((await lg).stdout).trim().split("\n").pop()!);
    child.kill("SIGTERM");
    await child.status;
    await Deno.remove(work, { recursive: true }).catch(() => {});
    const n = res.requests;
    const per: Record<string, number> = {};
    let total = 0;
    for (const k of Object.keys(b)) {
      const us = ((b[k] - (a[k] ?? 0)) * 10000) / n; // ticks are 10 ms
      total += us;
      if (us >= 0.5) per[k] = Math.round(us * 10) / 10;
    }
    (results[v] ??= []).push(res.throughput);
    console.log(
      JSON.stringify({
        r,
        v,
        load: la,
        tput: Math.round(res.throughput),
        p50: res.p50,
        p99: res.p99,
        errors: res.errors,
        cpuUs: Math.round(total * 10) / 10,
        per,
      }),
    );
  }
}
for (const [v, xs] of Object.entries(results)) {
  const s = [...xs].sort((x, y) => x - y);
  console.log(v, "median", Math.round(s[Math.floor(s.length / 2)]), xs.map(Math.round).join(" "));
}
