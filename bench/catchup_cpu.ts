/**
 * The restarted server's cost of a catch-up, without the full bench's bulk load: harness H of
 * the catch-up passes (BENCHMARKS.md, "Catch-up of 2026-11-28 (branch `catchup16`)"), kept.
 * Smith restores a record log of N records written here directly in the log's format (the
 * clients `bench/bulk.ts` makes), Campbell starts with an empty `--data-dir` and Smith its only
 * neighbour up, so it reads all N from one stream and writes them to its own record log. At
 * Campbell's `SYNC Smith` log line (the stream ended, every record held) its CPU is read from
 * /proc: the process's and its main thread's, which the box's load moves far less than the wall
 * time. With `--gc` Campbell runs with `--v8-flags=--trace-gc-nvp` and the scavenger's bytes are
 * summed (what it copied within the young generation and promoted: not moved by the load at all).
 *
 * Trees are alternated run by run (A B A B ..., or B A with `--reverse`: on a loaded box the
 * first of a pair is often the slower), so give each tree as a directory holding `main.ts`
 * (`git archive` of a commit):
 *
 *     deno run -A bench/catchup_cpu.ts [--records 1000000] [--runs 4] [--gc] [--reverse] \
 *       [--deno-flags="--v8-flags=--max-semi-space-size=64"] /tmp/base /tmp/branch
 *
 * Smith runs from the first tree. Prints one JSON line per run, then the medians per tree.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  herdConfig,
  loadavg,
  type Proc,
  processCpuMs,
  stablePortBase,
  startProcess,
} from "./common.ts";
import { bulkClient, bulkLocation } from "./bulk.ts";
import { median } from "./herd.ts";
import { EntryBuffer } from "../servers/persist.ts";

const OPTIONS = {
  records: { type: "string", default: "1000000" },
  runs: { type: "string", default: "4" },
  gc: { type: "boolean", default: false },
  reverse: { type: "boolean", default: false },
  "deno-flags": { type: "string", default: "" },
} as const;

/** The command line, or one line on stderr and exit 2 (as bench/run.ts). */
function flags() {
  try {
    return parseArgs({ args: Deno.args, options: OPTIONS, allowPositionals: true });
  } catch (err) {
    const what = String((err as Error).message).split(/\.(?:\s|$)/)[0];
    console.error(`catchup_cpu: ${what}`);
    Deno.exit(2);
  }
}

const { values: v, positionals: trees } = flags();
const records = Number(v.records);
const runs = Number(v.runs);
if (!Number.isSafeInteger(records) || records < 1 || !Number.isSafeInteger(runs) || runs < 1) {
  console.error("catchup_cpu: --records and --runs take positive integers");
  Deno.exit(2);
}
if (trees.length === 0) {
  console.error("catchup_cpu: give one or more trees (directories holding main.ts)");
  Deno.exit(2);
}
for (const t of trees) {
  if (!(await Deno.stat(`${t}/main.ts`).then(() => true, () => false))) {
    console.error(`catchup_cpu: ${t} holds no main.ts`);
    Deno.exit(2);
  }
}

/** CPU ms of a /proc stat file (utime + stime), or NaN when it is gone. */
function statCpuMs(path: string): number {
  try {
    const s = Deno.readTextFileSync(path);
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return NaN;
  }
}

/** Smith's record log of `n` records, with the clients bench/bulk.ts loads. */
async function writeRecordLog(path: string, n: number): Promise<void> {
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    const out = new EntryBuffer();
    out.add("E 1 c0ffee00");
    const origins = ["Hill", "Jaquez", "Smith", "Singleton"];
    for (let i = 0; i < n; i++) {
      out.entry({
        origin: origins[i % 4],
        diff: `+0.${String(100_000_000 + (i * 7919) % 900_000_000)}`,
        client: bulkClient("k", i),
        location: bulkLocation(i),
        time: `1764300000.${String(i).padStart(9, "0")}`,
      }, i + 1);
      if (out.length >= 1 << 20) await f.write(out.take());
    }
    out.add("C 1");
    await f.write(out.take());
  } finally {
    f.close();
  }
}

/** The scavenges' and mark-compacts' sums in a `--trace-gc-nvp` output. */
function gcSums(text: string) {
  let scavenges = 0, promoted = 0, survived = 0, pauseMs = 0, marks = 0;
  for (const line of text.split("\n")) {
    const at = line.indexOf("GC: {");
    if (at < 0) continue;
    let d: Record<string, number | string>;
    try {
      d = JSON.parse(line.slice(at + 4));
    } catch {
      continue;
    }
    if (d.gc === "s") {
      scavenges++;
      promoted += Number(d.promoted);
      survived += Number(d.new_space_survived);
      pauseMs += Number(d.pause);
    } else marks++;
  }
  const mib = (b: number) => Math.round(b / 2 ** 20);
  return {
    scavenges,
    promotedMiB: mib(promoted),
    survivedMiB: mib(survived),
    pauseMs: Math.round(pauseMs),
    marks,
  };
}

const work = await Deno.makeTempDir({ prefix: "catchup-cpu-" });
const seed = `${work}/Smith.records`;
await writeRecordLog(seed, records);
const order = v.reverse ? [...trees].reverse() : trees;
const results: Record<string, { wall: number; main: number; all: number }[]> = {};
const serverArgs = (tree: string, dir: string, name: string, data: string, flags: string[]) => [
  "run",
  "-A",
  "--config",
  `${tree}/deno.json`,
  ...flags,
  `${tree}/main.ts`,
  "server",
  name,
  "--config",
  `${dir}/herd.json`,
  "--log-dir",
  `${dir}/logs`,
  "--data-dir",
  data,
  "--places",
  "offline",
];
try {
  for (let r = 1; r <= runs; r++) {
    for (const tree of order) {
      const dir = `${work}/run-${r}-${order.indexOf(tree)}`;
      await Deno.mkdir(`${dir}/logs`, { recursive: true });
      await Deno.mkdir(`${dir}/smith`);
      await Deno.mkdir(`${dir}/campbell`);
      await Deno.copyFile(seed, `${dir}/smith/Smith.records`);
      await Deno.writeTextFile(
        `${dir}/herd.json`,
        JSON.stringify(herdConfig(stablePortBase(5, 29500))),
      );
      const env = { HERD_SECRET: "ab".repeat(16) };
      const procs: Proc[] = [];
      try {
        const ready = { ready: /^Logs: /, readyMs: 120_000, env };
        procs.push(
          await startProcess(
            Deno.execPath(),
            serverArgs(trees[0], dir, "Smith", `${dir}/smith`, []),
            `${dir}/smith.out`,
            ready,
          ),
        );
        const flags = [
          ...v["deno-flags"].split(" ").filter((f) => f !== ""),
          ...(v.gc ? ["--v8-flags=--trace-gc-nvp"] : []),
        ];
        const loadStart = loadavg();
        const t0 = performance.now();
        const campbell = await startProcess(
          Deno.execPath(),
          serverArgs(tree, dir, "Campbell", `${dir}/campbell`, flags),
          `${dir}/campbell.out`,
          ready,
        );
        procs.push(campbell);
        const pid = campbell.child.pid;
        const deadline = t0 + Math.max(120_000, records / 5);
        let wall = NaN;
        while (performance.now() < deadline) {
          const log = await Deno.readTextFile(`${dir}/logs/Campbell.log`).catch(() => "");
          if (/ SYNC Smith /.test(log)) {
            wall = performance.now() - t0;
            break;
          }
          await new Promise((res) => setTimeout(res, 25));
        }
        const main = statCpuMs(`/proc/${pid}/task/${pid}/stat`);
        const all = processCpuMs(pid) ?? NaN;
        const line = (await Deno.readTextFile(`${dir}/logs/Campbell.log`))
          .split("\n").find((l) => / SYNC Smith /.test(l)) ?? "no SYNC line";
        for (const p of procs.splice(0)) await p.stop();
        const gc = v.gc ? gcSums(await Deno.readTextFile(`${dir}/campbell.out`)) : undefined;
        (results[tree] ??= []).push({ wall, main, all });
        console.log(JSON.stringify({
          tree,
          run: r,
          wallMs: Math.round(wall),
          mainCpuMs: main,
          cpuMs: all,
          load: `${loadStart}-${loadavg()}`,
          ...(gc === undefined ? {} : { gc }),
          sync: line.slice(line.indexOf("SYNC")),
        }));
      } finally {
        for (const p of procs) await p.stop();
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    }
  }
} finally {
  await Deno.remove(work, { recursive: true }).catch(() => {});
}
for (const [tree, rs] of Object.entries(results)) {
  console.log(
    `${tree}: median of ${rs.length}: wall ${median(rs.map((x) => x.wall)).toFixed(0)} ms, ` +
      `main thread ${median(rs.map((x) => x.main)).toFixed(0)} ms, all threads ${
        median(rs.map((x) => x.all)).toFixed(0)
      } ms of CPU for ${records} records`,
  );
}
