/**
 * The report: the console table, the targets with met / not met, and the markdown summary that
 * BENCHMARKS.md is written from, plus the machine and code state recorded with a run.
 *
 * @module
 */

import { type ChartData } from "./chart.ts";
import { mib, type Point, ROOT } from "./common.ts";
import type { HerdReport } from "./herd.ts";
import type { WhatsatReport } from "./whatsat.ts";
import type { SseReport } from "./sse.ts";
import type { CatchupReport } from "./catchup.ts";
import { startupMarkdown, type StartupReport } from "./startup.ts";
import type { MemoryReport } from "./memory.ts";
import type { ProfileReport } from "./profile.ts";
import { type CompareReport, type SystemKey, SYSTEMS } from "./compare.ts";
import type { RedisCatchupReport, RedisResyncReport } from "./redis.ts";

export function printTable(points: Point[]): void {
  const rows = [
    [
      "series",
      "mode",
      "conns",
      "rate",
      "req/s",
      "p50 ms",
      "p99 ms",
      "max ms",
      "errors",
      "msgs/upd",
    ],
    ...points.map((p) => [
      p.series,
      p.mode,
      String(p.connections),
      p.rate ? String(p.rate) : "closed",
      String(p.throughput),
      p.p50.toFixed(3),
      p.p99.toFixed(3),
      p.max.toFixed(1),
      String(p.errors),
      p.flood ? `${p.flood.messagesPerUpdate}` : "",
    ]),
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) console.log(r.map((c, i) => c.padStart(widths[i])).join("  "));
}

// ---------------------------------------------------------------------------------------------
// Targets (issue 13) and the markdown summary that BENCHMARKS.md is written from.

/** One target (issue 13, and issue 6's that remain): met, not met, or null when not judged. */
export interface Target {
  name: string;
  target: string;
  measured: string;
  met: boolean | null;
}

/** Everything a run writes to latest.json. */
export interface RunResult {
  meta: Record<string, unknown> & { quick: boolean };
  reports: Record<string, HerdReport>;
  whatsat?: WhatsatReport | { error: string };
  sse?: SseReport | { error: string };
  catchup?: CatchupReport[] | { error: string };
  /** The catch-up part's Redis replica resync of as many members (older runs: none). */
  catchupRedis?: RedisResyncReport | { error: string };
  startup?: StartupReport | { error: string };
  memory?: MemoryReport[] | { error: string };
  profile?: ProfileReport | { error: string };
  compare?: CompareReport | { error: string };
  targets: Target[];
  chart: ChartData;
}

const ok = <T extends object>(v: T | { error: string } | undefined): T | undefined =>
  v !== undefined && !("error" in v) ? v as T : undefined;

const GiB = 1024 ** 3;

/**
 * The targets of issue 13 (and the two of issue 6 it keeps), judged on this run's figures: ratios
 * to the same run's baselines. Null (not judged) when the run did not measure a figure, or
 * measured it at the quick scale.
 */
export function judgeTargets(r: RunResult): Target[] {
  const t: Target[] = [];
  const ours = r.reports["our herd"];
  const cmp = ok(r.compare);
  for (const [key, label] of [["start", "`start`"], ["servers", "5 `server` processes"]] as const) {
    const ratio = cmp?.ratios[`${key}/redis`];
    t.push({
      name: `IAMAT throughput at ${cmp?.connections ?? 32} connections, ${label}`,
      target: "≥ 50% of five-node replicated Redis (GEOADD)",
      measured: ratio
        ? `${pct(ratio.median)}: median of ${ratio.perRound.length} interleaved rounds (${
          ratio.perRound.map(pct).join(", ")
        }; herd ${fmtInt(cmp!.median32[key] ?? 0)} req/s, Redis ${
          fmtInt(cmp!.median32.redis ?? 0)
        } req/s, medians; generator ${cmp!.generator})`
        : cmp?.redis.skipped
        ? `Redis skipped: ${cmp.redis.skipped}`
        : "not measured",
      met: ratio ? ratio.median >= 0.5 : null,
    });
  }
  for (const [key, label] of [["start", "`start`"], ["servers", "5 `server` processes"]] as const) {
    const hp = cmp?.halfPeak[key];
    t.push({
      name: `IAMAT p99 at half of peak, ${label}`,
      target: "≤ 5 ms",
      measured: hp
        ? `${hp.p99} ms at ${fmtInt(hp.rate)} req/s open loop over ${hp.connections} connections ` +
          `(p50 ${hp.p50} ms, ${fmtInt(hp.throughput)} req/s done${fromSend(hp)})`
        : "not measured",
      met: hp ? hp.p99 <= 5 && hp.errors === 0 : null,
    });
  }
  const pl = ours?.propagation;
  t.push({
    name: "Propagation p99, light load",
    target: "≤ 5 ms",
    measured: pl
      ? `${pl.fromReplyP99} ms from the AT reply (${pl.allP99} ms from sending the IAMAT)`
      : "not measured",
    met: pl ? pl.fromReplyP99 <= 5 && pl.lost === 0 : null,
  });
  const pu = ours?.propagationUnderLoad;
  t.push({
    name: "Propagation p99 at half of peak",
    target: "≤ 20 ms",
    measured: pu
      ? `${pu.fromReplyP99} ms from the AT reply (${pu.allP99} ms from sending) at ${pu.load?.rate} req/s` +
        ` (half of the herd part's peak, bench/load.ts)`
      : "not measured",
    met: pu ? pu.fromReplyP99 <= 20 && pu.lost === 0 : null,
  });
  const mpu = (ours?.points ?? []).flatMap((p) => p.flood ? [p.flood.messagesPerUpdate] : []);
  t.push({
    name: "Inter-server messages per update (issue 6)",
    target: "≤ 8",
    measured: mpu.length > 0 ? `${Math.max(...mpu)} (worst load point)` : "not measured",
    met: mpu.length > 0 ? Math.max(...mpu) <= 8 : null,
  });
  const mem = ok(r.memory)?.find((m) => m.persistence);
  const rmem = ok(cmp?.redis.memory);
  t.push({
    name: "RSS, 1M clients × 5 servers in one process, persistence on",
    target: "≤ 1 GiB",
    measured: mem
      ? `${(mem.rssAfter / GiB).toFixed(2)} GiB with ${fmtInt(mem.clients)} clients` +
        (rmem
          ? ` (five Redis nodes with ${fmtInt(rmem.members)}: ${
            (rmem.rssAfter / GiB).toFixed(2)
          } GiB)`
          : "") +
        (mem.clients < 1_000_000 ? " (quick scale)" : "")
      : r.memory
      ? "not measured (run without --skip-persist)"
      : "not measured",
    met: mem && mem.clients >= 1_000_000 && mem.complete ? mem.rssAfter <= 1 * GiB : null,
  });
  t.push(...catchupTargets(r));
  const sse = ok(r.sse);
  t.push({
    name: "Cost of 100 dashboard SSE subscribers (issue 6)",
    target: "≤ 20% of IAMAT throughput",
    measured: sse
      ? `${sse.dropPercent}% drop (${sse.with.throughput} vs ${
        Math.round(sse.without.reduce((a, p) => a + p.throughput, 0) / sse.without.length)
      } req/s)`
      : "not measured",
    met: sse ? sse.dropPercent <= 20 : null,
  });
  return t;
}

/**
 * The catch-up target's two halves, each judged on its own: ≤ 5 s, and ≤ a Redis replica's
 * resync of as many members in the same run (the catch-up part's own, else the compare part's).
 */
function catchupTargets(r: RunResult): Target[] {
  const cu = ok(r.catchup)?.find((c) => c.persistence);
  const own = ok(r.catchupRedis);
  const cmp = ok(ok(r.compare)?.redis.catchup);
  // The resync of at least as many members as ours caught up on; a smaller one is no baseline.
  const rcu: RedisCatchupReport | undefined = [own, cmp].find((x) =>
    x !== undefined && cu !== undefined && x.members >= cu.target
  );
  const ours = cu
    ? (cu.totalMs === null
      ? `not caught up (held ${cu.held} of ${cu.target})`
      : `${(cu.totalMs / 1000).toFixed(2)} s from restart (${
        (cu.startupMs / 1000).toFixed(2)
      } s start-up + ${((cu.catchupMs ?? 0) / 1000).toFixed(2)} s catch-up) for ${
        fmtInt(cu.target)
      } records${
        cu.target < cu.records ? ` (of ${fmtInt(cu.records)} planned: the load lost some)` : ""
      }`) + (cu.records < 1_000_000 ? " (quick scale)" : "")
    : r.catchup
    ? "not measured (run without --skip-persist)"
    : "not measured";
  // Judged on what the others agreed on: a load that lost more than a few is no 1M run.
  const whole = cu !== undefined && cu.records >= 1_000_000 && cu.target >= cu.records * 0.999;
  const done = cu?.totalMs ?? null;
  const redisMs = rcu?.totalMs ?? null;
  const redisSays = rcu
    ? `Redis replica restarted empty${rcu === own ? " (this part)" : " (compare part)"}: ${
      redisMs === null ? "did not finish" : `${(redisMs / 1000).toFixed(2)} s`
    } for ${fmtInt(rcu.members)} members`
    : r.catchupRedis && "error" in r.catchupRedis
    ? `Redis resync failed or skipped: ${r.catchupRedis.error}`
    : "Redis not measured";
  return [
    {
      name: "Catch-up of 1M missed records, persistence on",
      target: "≤ 5 s",
      measured: ours,
      met: whole ? done !== null && done <= 5000 : null,
    },
    {
      name: "Catch-up of 1M missed records, persistence on, against Redis",
      target: "≤ a Redis replica's resync of as many members in the same run",
      measured: `${ours}; ${redisSays}`,
      // Not judged without a Redis figure; a resync that never finished is beaten by any end.
      met: whole && rcu !== undefined
        ? done !== null && (redisMs === null || done <= redisMs)
        : null,
    },
  ];
}

function pct(v: number): string {
  return `${Math.round(v * 1000) / 10}%`;
}

/**
 * `; from the send p50 X, p99 Y ms` when the native generator measured them: the herd's answer
 * time without the open loop's queue behind late replies (empty otherwise).
 */
function fromSend(p: Point): string {
  return p.sentP50 === undefined || p.sentP99 === undefined
    ? ""
    : `; from the send p50 ${p.sentP50} ms, p99 ${p.sentP99} ms`;
}

function fmtInt(n: number): string {
  return n.toLocaleString("en-US");
}

function ms(v: number | null | undefined): string {
  return v === null || v === undefined || Number.isNaN(v) ? "—" : v.toFixed(v < 10 ? 2 : 1);
}

/**
 * The code measured: HEAD's commit, and the files outside bench/ that differed from it when the
 * run started (other people edit the tree while benches run).
 */
export async function codeState(): Promise<{ commit: string; dirty: string[] }> {
  const git = async (...args: string[]) => {
    try {
      const out = await new Deno.Command("git", { args, cwd: ROOT, stderr: "null" }).output();
      return new TextDecoder().decode(out.stdout).trimEnd();
    } catch {
      return "";
    }
  };
  const commit = await git("log", "-1", "--format=%h %ci %s");
  const dirty = (await git("status", "--porcelain")).split("\n").map((l) => l.slice(3))
    .filter((f) => f && !f.startsWith("bench/"));
  return { commit, dirty };
}

/** The machine, for the report: CPUs, CPU model, memory, kernel, Deno, Python. */
export async function machine(python: string): Promise<Record<string, string | number>> {
  const read = (f: string) => {
    try {
      return Deno.readTextFileSync(f);
    } catch {
      return "";
    }
  };
  const cpuModel = /model name\s*:\s*(.*)/.exec(read("/proc/cpuinfo"))?.[1]?.trim() ?? "?";
  const memKb = Number(/MemTotal:\s+(\d+)/.exec(read("/proc/meminfo"))?.[1] ?? 0);
  let py = "?";
  try {
    const out = await new Deno.Command(python, { args: ["--version"] }).output();
    py = new TextDecoder().decode(out.stdout.length ? out.stdout : out.stderr).trim();
  } catch { /* no python */ }
  return {
    cpus: navigator.hardwareConcurrency,
    cpuModel,
    memoryGiB: Math.round((memKb / 1024 / 1024) * 10) / 10,
    kernel: read("/proc/sys/kernel/osrelease").trim(),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    python: py,
  };
}

function mdTable(head: string[], rows: (string | number)[][]): string {
  return [
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

/** The compare part as markdown: the herd beside the floor and replicated Redis. */
function compareMarkdown(c: CompareReport): string[] {
  const out: string[] = [];
  const keys = Object.keys(SYSTEMS) as SystemKey[];
  const at = (k: SystemKey, n: number) =>
    c.points.find((p) => p.series === SYSTEMS[k] && p.connections === n && p.rate === 0);
  const roundPoint = (k: SystemKey) => {
    // The round whose throughput is the median's (or nearest): its latencies go with it.
    const pts = c.rounds.flatMap((r) => r.points[k] ? [r.points[k]!] : []);
    const m = c.median32[k];
    return m === undefined
      ? undefined
      : pts.reduce((a, b) => Math.abs(b.throughput - m) < Math.abs(a.throughput - m) ? b : a);
  };
  const others = [...new Set(c.points.map((p) => p.connections))].sort((a, b) => a - b);
  const cell = (p: Point | undefined) =>
    p
      ? `${fmtInt(p.throughput)} (${ms(p.p50)} / ${ms(p.p99)})` +
        (p.errors ? ` **${p.errors} errors**` : "")
      : "—";
  out.push(
    "## Our herd beside the floor and replicated Redis (one generator for all)",
    "",
    `Generator: ${c.generator}, one request outstanding per connection. Cells: req/s (p50 / p99 ms). ` +
      `The ${c.connections}-connection column is the median of ${c.rounds.length} interleaved rounds ` +
      `(every system once per round; latencies of the round nearest the median); the ratios are ` +
      `per round, then the median. ` +
      `1-min load average ${c.loadavgStart} at the start of the part, ${c.loadavgEnd} at its end.`,
    "",
    mdTable(
      [
        "system",
        ...others.filter((n) => n < c.connections).map((n) => `${n} conn`),
        `${c.connections} conns (median)`,
        ...others.filter((n) => n > c.connections).map((n) => `${n} conns`),
        "vs C echo",
        "vs Redis",
      ],
      keys.filter((k) => c.median32[k] !== undefined).map((k) => {
        const ratio = (b: SystemKey) =>
          c.median32[b] ? pct((c.median32[k] ?? 0) / c.median32[b]!) : "";
        return [
          SYSTEMS[k],
          ...others.filter((n) => n < c.connections).map((n) => cell(at(k, n))),
          // The median's throughput, with the latencies of the round nearest it.
          cell({ ...roundPoint(k)!, throughput: Math.round(c.median32[k]!) }),
          ...others.filter((n) => n > c.connections).map((n) => cell(at(k, n))),
          k === "cEcho" ? "" : ratio("cEcho"),
          k === "redis" ? "" : ratio("redis"),
        ];
      }),
    ),
    "",
    mdTable(
      [
        "round",
        "load avg",
        ...keys.filter((k) => c.median32[k] !== undefined).map((k) => SYSTEMS[k]),
      ],
      c.rounds.map((r, i) => [
        i + 1,
        r.loadavg,
        ...keys.filter((k) => c.median32[k] !== undefined).map((k) =>
          r.points[k] ? fmtInt(r.points[k]!.throughput) : "—"
        ),
      ]),
    ),
    "",
  );
  const lines: string[] = [];
  const ratioLine = (name: string, what: string) => {
    const r = c.ratios[name];
    if (r) {
      lines.push(`- ${what}: **${pct(r.median)}** (rounds: ${r.perRound.map(pct).join(", ")})`);
    }
  };
  ratioLine(
    "cEcho2/cEcho",
    "The floor with twice the generator (2 threads) against 1 thread: if the floor were the " +
      "generator's, this would be well above 100%",
  );
  ratioLine("start/redis", "`start` ÷ Redis");
  ratioLine("servers/redis", "5 `server` processes ÷ Redis");
  ratioLine("redis/cEcho", "Redis ÷ C echo");
  ratioLine("denoEcho/cEcho", "Deno echo ÷ C echo");
  for (const [k, p] of Object.entries(c.halfPeak)) {
    lines.push(
      `- ${SYSTEMS[k as SystemKey]} at half of its peak (open loop, ${fmtInt(p.rate)} req/s over ` +
        `${p.connections} connections): p50 ${ms(p.p50)} ms, p99 **${ms(p.p99)} ms**, ` +
        `${fmtInt(p.throughput)} req/s done, ${p.errors} errors${fromSend(p)}`,
    );
  }
  const rm = ok(c.redis.memory);
  if (rm) {
    lines.push(
      `- Redis with ${fmtInt(rm.members)} GEOADD members on each of five nodes: ` +
        `**${mib(rm.rssAfter)} MiB** RSS summed (${mib(rm.rssBefore)} MiB before; per node ` +
        `${Object.entries(rm.perNode).map(([n, b]) => `${n} ${mib(b)}`).join(", ")} MiB); ` +
        `loaded and replicated in ${(rm.loadMs / 1000).toFixed(1)} s`,
    );
  } else if (c.redis.memory) {
    lines.push(`- Redis memory: error ${(c.redis.memory as { error: string }).error}`);
  }
  const rc = ok(c.redis.catchup);
  if (rc) {
    lines.push(
      `- Redis replica restarted empty, ${fmtInt(rc.members)} members: link up after ` +
        `${
          rc.linkUpMs === null ? "never" : `${(rc.linkUpMs / 1000).toFixed(2)} s`
        }, all held after ` +
        `**${
          rc.totalMs === null ? `never (held ${rc.held})` : `${(rc.totalMs / 1000).toFixed(2)} s`
        }**`,
    );
  } else if (c.redis.catchup) {
    lines.push(`- Redis catch-up: error ${(c.redis.catchup as { error: string }).error}`);
  }
  if (c.redis.skipped) lines.push(`- **Redis skipped: ${c.redis.skipped}**`);
  out.push(...lines, "");
  return out;
}

/** The compare part on the console: every point, then the ratios. */
export function printCompare(c: CompareReport): void {
  console.log(`\ncompare (${c.generator}):`);
  // Older reports (before the warm-up) have no field: said as 0.
  console.log(
    `each Deno system warmed up ${c.warmupRunMs ?? 0} ms before the rounds, the herds ${
      c.herdWarmupMs ?? c.warmupRunMs ?? 0
    } ms (not measured)`,
  );
  printTable([
    ...c.rounds.flatMap((r) => Object.values(r.points)),
    ...c.points,
    ...Object.values(c.halfPeak),
  ]);
  for (const [name, r] of Object.entries(c.ratios)) {
    console.log(`ratio ${name}: ${pct(r.median)} (rounds ${r.perRound.map(pct).join(", ")})`);
  }
  const rm = ok(c.redis.memory);
  if (rm) console.log(`redis: ${rm.members} members x5: ${mib(rm.rssAfter)} MiB RSS summed`);
  const rc = ok(c.redis.catchup);
  if (rc) {
    console.log(
      `redis: replica catch-up of ${rc.members}: ${rc.totalMs} ms (link up ${rc.linkUpMs} ms)`,
    );
  }
  if (c.redis.skipped) console.log(`redis: SKIPPED (${c.redis.skipped})`);
}

/** The run as markdown tables: what BENCHMARKS.md quotes. */
export function summaryMarkdown(r: RunResult): string {
  const out: string[] = [];
  const m = r.meta as Record<string, unknown>;
  const mc = m.machine as Record<string, unknown>;
  out.push(
    `# Bench run ${m.date}${r.meta.quick ? " (quick)" : ""}`,
    "",
    `Machine: ${mc.cpus} CPUs (${mc.cpuModel}), ${mc.memoryGiB} GiB, Linux ${mc.kernel}; ` +
      `Deno ${mc.deno} (V8 ${mc.v8}); ${mc.python}. Command: \`${m.command}\`. ` +
      `Took ${m.elapsedS} s. 1-min load average ${m.loadavgAtStart} at start, ${m.loadavgAtEnd} at end.`,
    "",
  );
  if (m.stoppedBy) {
    out.push(`**Stopped early (${m.stoppedBy}): the parts after that point are missing.**`, "");
  }
  const c0 = m.codeAtStart as { commit: string; dirty: string[] } | undefined;
  const c1 = m.codeAtEnd as { commit: string; dirty: string[] } | undefined;
  if (c0) {
    out.push(
      `Code: ${c0.commit}` + (c0.dirty.length ? ` (uncommitted: ${c0.dirty.join(", ")})` : "") +
        (c1 && c1.commit !== c0.commit ? `; **HEAD moved during the run to ${c1.commit}**` : "") +
        ".",
      "",
    );
  }
  const cmp = ok(r.compare);
  if (cmp) out.push(...compareMarkdown(cmp));
  else if (r.compare) out.push(`Compare: error ${(r.compare as { error: string }).error}`, "");
  const echo = r.reports["echo baseline"];
  const asy = r.reports["asyncio herd"];
  const ours = r.reports["our herd"];
  const find = (rep: HerdReport | undefined, c: number, open = false) =>
    open ? rep?.halfPeak ?? undefined : rep?.points.find((p) => p.connections === c);
  const rows: (string | number)[][] = [];
  for (const [name, rep] of Object.entries(r.reports)) {
    const extra = [rep.halfPeak, rep.atHerdRate].filter((p): p is Point => !!p);
    for (const p of [...rep.points, ...extra]) {
      const open = p.rate > 0;
      // An open-loop row's p99 baseline: the echo floor at the same rate when measured.
      const e = open && echo?.atHerdRate?.rate === p.rate
        ? echo.atHerdRate
        : find(echo, p.connections, open);
      const a = find(asy, p.connections, open);
      rows.push([
        name,
        open ? `open ${p.rate}/s` : "closed",
        p.connections,
        fmtInt(p.throughput),
        // Open-loop rows run at a set rate (half of each one's own peak): no throughput ratio.
        name !== "echo baseline" && e && !open ? pct(p.throughput / e.throughput) : "",
        name === "our herd" && a && !open ? `${(p.throughput / a.throughput).toFixed(1)}×` : "",
        ms(p.p50),
        ms(p.p99),
        name !== "echo baseline" && e ? `${(p.p99 / e.p99).toFixed(1)}×` : "",
        p.errors,
        p.flood ? String(p.flood.messagesPerUpdate) : "",
      ]);
    }
  }
  out.push(
    "## IAMAT load (Hill), Deno echo and asyncio seed herd, through bench/load.ts",
    "",
    mdTable(
      [
        "series",
        "loop",
        "conns",
        "req/s",
        "vs echo",
        "vs asyncio",
        "p50 ms",
        "p99 ms",
        "p99 vs echo",
        "errors",
        "msgs/update",
      ],
      rows,
    ),
    "",
  );
  const il = r.reports["our herd"]?.interleaved;
  if (il) {
    out.push(
      `### Interleaved rounds, ${il.connections} connections (the throughput target's figure)`,
      "",
      "The echo floor and our herd alternate (echo, herd, echo, ...); each herd point is divided by",
      "the mean of the echo points either side of it, so drift of the machine between parts cancels.",
      "",
      mdTable(
        ["round", "echo before", "our herd", "echo after", "ratio"],
        il.herd.map((p, i) => [
          i + 1,
          fmtInt(il.echo[i].throughput),
          fmtInt(p.throughput),
          fmtInt(il.echo[i + 1].throughput),
          pct(il.ratios[i]),
        ]),
      ),
      "",
      `Median ratio: **${pct(il.median)}**.`,
      "",
    );
  }
  const prow: (string | number)[][] = [];
  for (const [name, rep] of Object.entries(r.reports)) {
    for (const p of [rep.propagation, rep.propagationUnderLoad]) {
      if (!p) continue;
      const base = p.load ? asy?.propagationUnderLoad : asy?.propagation;
      prow.push([
        name,
        p.load ? `open loop ${p.load.rate}/s × ${p.load.connections}` : "idle",
        p.observed.join("+"),
        p.method,
        `${p.samples} (${p.lost} lost)`,
        ms(p.fromReplyP50),
        ms(p.fromReplyP99),
        ms(p.allP50),
        ms(p.allP99),
        name === "our herd" && base ? `${(p.allP99 / base.allP99).toFixed(2)}×` : "",
      ]);
    }
  }
  if (prow.length > 0) {
    out.push(
      "## Propagation Hill → farthest servers (2 hops)",
      "",
      mdTable(
        [
          "herd",
          "load",
          "observed",
          "how",
          "samples",
          "reply→apply p50",
          "reply→apply p99",
          "send→apply p50",
          "send→apply p99",
          "p99 vs asyncio",
        ],
        prow,
      ),
      "",
    );
  }
  const hw = ours?.halfPeakWithMarkers;
  if (hw) {
    out.push(
      `Load point run with the markers (observer streams on): ${fmtInt(hw.throughput)} req/s, ` +
        `p50 ${ms(hw.p50)} ms, p99 ${ms(hw.p99)} ms, ${hw.errors} errors.`,
      "",
    );
  }
  const conv = ours?.points.map((p) =>
    p.converged
      ? `${p.connections} conns: ${p.converged.ms === null ? "NOT" : `${p.converged.ms} ms`}`
      : ""
  ).filter(Boolean);
  if (conv?.length) out.push(`Convergence after each closed-loop point: ${conv.join(", ")}.`, "");

  const wh = ok(r.whatsat);
  if (wh) {
    out.push(
      `## WHATSAT (radius ${wh.radiusKm} km, bound ${wh.bound}, clients around ${wh.location})`,
      "",
      mdTable(
        ["provider", "conns", "req/s", "p50 ms", "p99 ms", "errors", "probe reply", "upstream"],
        wh.series.flatMap((s) =>
          s.points.map((p) => [
            s.provider,
            p.connections,
            fmtInt(p.throughput),
            ms(p.p50),
            ms(p.p99),
            p.errors,
            s.probe ? `${s.probe.status}, ${s.probe.results} results, ${s.probe.bytes} B` : "?",
            s.upstream ? `${fmtInt(s.upstream.requests)} requests` : "",
          ])
        ),
      ),
      "",
    );
  } else if (r.whatsat) out.push(`WHATSAT: error ${(r.whatsat as { error: string }).error}`, "");

  const mems = ok(r.memory);
  if (mems) {
    out.push(
      "## Memory: one `main.ts start` process, every client known to all five servers",
      "",
      mdTable(
        [
          "records kept",
          "clients",
          "RSS before",
          "RSS after",
          "peak RSS",
          "RSS after forced GC",
          "JS heap after GC",
          "bytes/record (RSS)",
          "bytes/record (heap)",
          "load + flood",
          "complete",
        ],
        mems.map((x) => [
          x.persistence ? "memory + record log" : "memory only",
          fmtInt(x.clients),
          `${mib(x.rssBefore)} MiB`,
          `${mib(x.rssAfter)} MiB`,
          `${mib(x.rssPeak)} MiB`,
          `${mib(x.rssAfterGc)} MiB`,
          `${mib(x.heapAfterGc)} MiB`,
          x.bytesPerRecordRss,
          x.bytesPerRecordHeap,
          `${(x.load.ms / 1000).toFixed(1)} s + ${(x.floodMs / 1000).toFixed(1)} s`,
          x.complete ? "yes" : `NO ${JSON.stringify(x.counts)}`,
        ]),
      ),
      "",
    );
  } else if (r.memory) out.push(`Memory: error ${(r.memory as { error: string }).error}`, "");

  const cus = ok(r.catchup);
  // Older results have no CPU figures.
  const cpuS = (ms: number | null | undefined) => ms == null ? "?" : `${(ms / 1000).toFixed(2)} s`;
  if (cus) {
    out.push(
      "## Catch-up: Campbell restarted after missing every record (five `server` processes)",
      "",
      mdTable(
        [
          "records kept",
          "missed",
          "restart → all held",
          "start-up",
          "catch-up",
          "both SYNCs done",
          "CPU: restarted / its 2 neighbours",
          "RSS of one server",
        ],
        cus.map((c) => [
          c.persistence ? "memory + record log" : "memory only",
          fmtInt(c.target),
          c.totalMs === null ? `NOT (held ${c.held})` : `${(c.totalMs / 1000).toFixed(2)} s`,
          `${(c.startupMs / 1000).toFixed(2)} s`,
          c.catchupMs === null ? "—" : `${(c.catchupMs / 1000).toFixed(2)} s`,
          c.syncDoneMs === null ? "—" : `${(c.syncDoneMs / 1000).toFixed(2)} s`,
          `${cpuS(c.cpuVictimMs)} / ${cpuS(c.cpuNeighboursMs)}`,
          c.rssOther === null ? "?" : `${mib(c.rssOther)} MiB`,
        ]),
      ),
      "",
      ...cus.map((c) =>
        `Restarted ${c.victim}'s link events (${
          c.persistence ? "memory + record log" : "memory only"
        }): ${(c.linkEvents ?? c.syncLines).join("; ")}.${
          c.endMethod === undefined ? "" : ` End taken from: ${c.endMethod}.`
        }${c.failure === undefined ? "" : ` **FAILED: ${c.failure}.**`}${
          c.writtenMs == null ? "" : ` Record log last written ${cpuS(c.writtenMs)} after spawn.`
        }`
      ),
      "",
    );
  } else if (r.catchup) out.push(`Catch-up: error ${(r.catchup as { error: string }).error}`, "");
  const rr = ok(r.catchupRedis);
  if (rr) {
    out.push(
      `Redis, the same run: a primary and four replicas (AOF everysec) with ${
        fmtInt(rr.members)
      } members (loaded in ${(rr.loadMs / 1000).toFixed(1)} s), the last replica restarted ` +
        `empty: link up after ${
          rr.linkUpMs === null ? "never" : `${(rr.linkUpMs / 1000).toFixed(2)} s`
        }, all held after **${
          rr.totalMs === null ? `never (held ${rr.held})` : `${(rr.totalMs / 1000).toFixed(2)} s`
        }** (load average ${rr.loadavgStart} → ${rr.loadavgEnd}).`,
      "",
    );
  } else if (r.catchupRedis) {
    out.push(`**Redis resync: ${(r.catchupRedis as { error: string }).error}**`, "");
  }

  const su = ok(r.startup);
  if (su) out.push(...startupMarkdown(su));
  else if (r.startup) out.push(`Start-up: error ${(r.startup as { error: string }).error}`, "");

  const sse = ok(r.sse);
  if (sse) {
    const off = find(ours, 32);
    const base = sse.without.reduce((a, p) => a + p.throughput, 0) / sse.without.length;
    out.push(
      `## Dashboard SSE subscribers (32-connection IAMAT at Hill)`,
      "",
      mdTable(
        ["herd", "req/s", "vs dashboard on, 0 readers (mean)", "p50 ms", "p99 ms", "errors"],
        [
          ...(off ? [{ ...off, series: "dashboard off (the `herd` part above)" }] : []),
          ...sse.without.slice(0, 1),
          sse.with,
          ...sse.without.slice(1),
        ].map((p) => [
          p.series,
          fmtInt(p.throughput),
          pct(p.throughput / base),
          ms(p.p50),
          ms(p.p99),
          p.errors,
        ]),
      ),
      "",
      sse.readers
        ? `Readers got ${mib(sse.readers.bytes)} MiB in ${sse.readers.messages} messages over ` +
          `${sse.readers.seconds} s (per reader ${mib(sse.readers.minBytes)}–${
            mib(sse.readers.maxBytes)
          } MiB), ${sse.readers.errors} errors; hub: ${JSON.stringify(sse.hub)}.`
        : "",
      "",
    );
  } else if (r.sse) out.push(`SSE: error ${(r.sse as { error: string }).error}`, "");

  out.push(
    "## Targets",
    "",
    mdTable(
      ["target", "wanted", "measured", "status"],
      r.targets.map((t) => [
        t.name,
        t.target,
        t.measured,
        t.met === null ? "not judged" : t.met ? "met" : "**not met**",
      ]),
    ),
    "",
  );
  for (const c of ok(r.profile)?.cases ?? []) {
    out.push(
      `## CPU profile, ${c.name}, 32-connection IAMAT (${
        fmtInt(c.point.throughput)
      } req/s while sampled, ${c.totalMs} ms sampled)`,
      "",
      mdTable(
        ["function", "where", "self ms", "share"],
        c.top.map((f) => [f.functionName, f.where || "(native)", f.ms, pct(f.share)]),
      ),
      "",
    );
  }
  return out.join("\n");
}

/** The propagation, flooding and convergence lines printed after the table. */
export function printHerdLines(reports: Record<string, HerdReport>): void {
  for (const [name, r] of Object.entries(reports)) {
    for (const p of [r.propagation, r.propagationUnderLoad]) {
      if (!p) continue;
      console.log(
        `${name}: propagation ${r.entry} -> ${p.observed.join("+")} ` +
          (p.load ? `under ${p.load.rate} req/s` : "idle") +
          `: reply->apply p50 ${p.fromReplyP50} ms, p99 ${p.fromReplyP99} ms; ` +
          `send->apply p50 ${p.allP50} ms, p99 ${p.allP99} ms (${p.samples} samples, ${p.lost} lost)`,
      );
    }
    for (const pt of r.points) {
      const parts = [];
      if (pt.flood) {
        parts.push(
          `${pt.flood.messagesPerUpdate} inter-server msgs/update (${pt.flood.updates} updates` +
            (pt.flood.settled ? ")" : ", still flooding at the settle deadline)"),
        );
        if (pt.flood.floodErrors !== undefined) parts.push(`flood errors ${pt.flood.floodErrors}`);
      }
      if (pt.converged) {
        const c = pt.converged;
        parts.push(
          `converged ${c.share * 100}% of ${c.pairs} client/server pairs` +
            (c.ms !== null ? ` ${c.ms} ms after load` : " (NOT within 10 s)"),
        );
      }
      if (parts.length > 0) console.log(`${name} @${pt.connections}: ${parts.join(", ")}`);
    }
  }
}
