/**
 * Memory figure: RSS of ONE `main.ts start` process (all five servers) before and after every
 * server has learnt N distinct clients (N = 1,000,000 in the full run, 100,000 with --quick),
 * and bytes per stored record (the growth divided by 5·N records, since every server keeps its
 * own copy).
 *
 * The clients are loaded by bench/bulk.ts (pipelined IAMATs, one connection per server, so each
 * server is the origin of a fifth of them); "all five servers have all records" is read from
 * each server's observer STATE line (its `records` count). RSS is VmRSS from /proc; the JS heap
 * is read through the inspector (`--inspect` on a loopback port) after a forced full GC, which
 * separates what the records really hold from garbage not yet collected and from memory V8 or
 * the allocator keeps. `--memory` (the default here) keeps records in memory only; `persist`
 * adds the record log per server (servers/persist.ts).
 *
 * Run alone: `deno run -A bench/run.ts --only memory [--quick] [--skip-persist]`.
 *
 * @module
 */

import { loadavg, mib, processMemory, progress, sleep, stablePortBase } from "./common.ts";
import type { BulkResult } from "./bulk.ts";
import {
  launchStart,
  makeHerdDir,
  recordCounts,
  runBulk,
  waitForHerdLinks,
  waitForRecords,
} from "./herd_proc.ts";
import { Inspector } from "./inspector.ts";
import { HERD_NAMES } from "./common.ts";

/** The memory figure. Sizes in bytes. */
export interface MemoryReport {
  clients: number;
  /** clients × servers: every server stores every client. */
  records: number;
  persistence: boolean;
  /** Extra environment of the herd process (e.g. allocator settings), when any. */
  env?: Record<string, string>;
  /** Idle herd after start, after a forced GC. */
  rssBefore: number;
  heapBefore: number;
  /** Once every server held every client (plus 2 s), without forcing a GC: what `ps` shows. */
  rssAfter: number;
  /**
   * The JS heap at that moment, before any forced GC (`Deno.memoryUsage()`): how much of
   * `rssAfter` is heap that V8 has not collected yet.
   */
  heapUsedAfter: number;
  heapTotalAfter: number;
  /** RSS after 10 s more of idling, still without a forced GC (what V8 gives back by itself). */
  rssSettled: number;
  /** The same after a forced full GC. */
  rssAfterGc: number;
  heapAfterGc: number;
  /** The JS heap's committed size after that GC (`Deno.memoryUsage().heapTotal`). */
  heapTotalAfterGc: number;
  /** Peak RSS over the whole run (VmHWM). */
  rssPeak: number;
  /** (rssAfter − rssBefore) / records. */
  bytesPerRecordRss: number;
  /** (heapAfterGc − heapBefore) / records: what a record costs in the JS heap. */
  bytesPerRecordHeap: number;
  load: BulkResult;
  /** From the end of the bulk load until every server held every client. */
  floodMs: number;
  /** From the first IAMAT until every server held every client. */
  totalMs: number;
  /** Per-server count at the end (short of `clients` when records were lost). */
  counts: Record<string, number | null>;
  complete: boolean;
  /** Size of the five servers' log files at the end. */
  logBytes: number;
  loadavgStart: number;
  loadavgEnd: number;
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile) total += (await Deno.stat(`${dir}/${e.name}`)).size;
    }
  } catch {
    // gone
  }
  return total;
}

/** Runs the memory figure for `clients` distinct clients. */
export async function benchMemory(
  logDir: string,
  clients: number,
  persist: boolean,
  env: Record<string, string> = {},
): Promise<MemoryReport> {
  const loadavgStart = loadavg();
  const dir = await makeHerdDir(27000);
  const inspectPort = stablePortBase(1, 27500);
  const label = persist ? "memory+log" : "memory";
  const herd = await launchStart(dir, `${logDir}/${label}-herd.log`, {
    persist,
    env,
    denoFlags: [`--inspect=127.0.0.1:${inspectPort}`],
  }).catch(async (e) => {
    await dir.remove(); // the finally below is not reached
    throw e;
  });
  let inspector: Inspector | undefined;
  try {
    inspector = await Inspector.connect(inspectPort);
    if (!(await waitForHerdLinks(dir, HERD_NAMES, 15_000))) {
      throw new Error("herd links did not come up");
    }
    await sleep(1000);
    const before = await inspector.gcAndHeap();
    const rssBefore = processMemory(herd.pid)!.rss;
    progress(
      `[${label}] ${clients} clients into 5 servers in one process (RSS ${mib(rssBefore)} MiB)`,
    );

    const t0 = performance.now();
    let peakSeen = rssBefore;
    const sampler = setInterval(() => {
      const m = processMemory(herd.pid);
      if (m) peakSeen = Math.max(peakSeen, m.rss);
    }, 500);
    let load: BulkResult;
    try {
      load = await runBulk([
        "--ports",
        HERD_NAMES.map((n) => dir.ports[n]).join(","),
        "--count",
        String(clients),
        "--prefix",
        "m",
        "--window",
        "768",
        "--timeout-ms",
        // 3 ms a client: on a shared box at load 20 the 1M load ran at ~550 clients/s.
        String(Math.max(120_000, clients * 3)),
      ]);
    } finally {
      clearInterval(sampler);
    }
    const loadEnd = performance.now();
    progress(
      `[${label}] loaded in ${
        (load.ms / 1000).toFixed(1)
      } s (${load.rate}/s, ${load.errors} errors); waiting for the flood`,
    );
    let lastPrint = 0;
    const done = await waitForRecords(dir, HERD_NAMES, clients, {
      pollMs: 1000,
      timeoutMs: Math.max(60_000, clients / 4),
      stallMs: 15_000,
      tick: (counts) => {
        const m = processMemory(herd.pid);
        if (m) peakSeen = Math.max(peakSeen, m.rss);
        if (performance.now() - lastPrint > 10_000) {
          lastPrint = performance.now();
          progress(`[${label}] records ${JSON.stringify(counts)} RSS ${mib(m?.rss ?? 0)} MiB`);
        }
      },
    });
    const allAt = performance.now();
    await sleep(2000);
    const rssAfter = processMemory(herd.pid)!.rss;
    const heapAfter = await inspector.memoryUsage();
    await sleep(10_000);
    const rssSettled = processMemory(herd.pid)!.rss;
    progress(
      `[${label}] RSS ${mib(rssAfter)} MiB (JS heap ${mib(heapAfter.heapUsed)} used of ${
        mib(heapAfter.heapTotal)
      } MiB), ${mib(rssSettled)} MiB 10 s later`,
    );
    const after = await inspector.gcAndHeap();
    const mem = processMemory(herd.pid)!;
    const usage = await inspector.memoryUsage();
    const counts = await recordCounts(dir, HERD_NAMES);
    const records = clients * HERD_NAMES.length;
    return {
      clients,
      records,
      persistence: persist,
      ...(Object.keys(env).length > 0 ? { env } : {}),
      rssBefore,
      heapBefore: before.usedBytes,
      rssAfter,
      heapUsedAfter: heapAfter.heapUsed,
      heapTotalAfter: heapAfter.heapTotal,
      rssSettled,
      rssAfterGc: mem.rss,
      heapAfterGc: after.usedBytes,
      heapTotalAfterGc: usage.heapTotal,
      rssPeak: Math.max(mem.hwm, peakSeen),
      bytesPerRecordRss: Math.round((rssAfter - rssBefore) / records),
      bytesPerRecordHeap: Math.round((after.usedBytes - before.usedBytes) / records),
      load,
      floodMs: Math.round(allAt - loadEnd),
      totalMs: Math.round(allAt - t0),
      counts,
      complete: done.ok,
      logBytes: await dirBytes(`${dir.work}/logs`),
      loadavgStart,
      loadavgEnd: loadavg(),
    };
  } finally {
    inspector?.close();
    await herd.stop();
    await dir.remove();
  }
}
