/**
 * The bench's target verdicts (bench/report.ts `judgeTargets`): a catch-up is judged on the
 * records the other servers agreed on, and a load that lost many is no 1M run.
 */

import assert from "node:assert/strict";
import { judgeTargets, type RunResult } from "../bench/report.ts";
import type { CatchupReport } from "../bench/catchup.ts";
import type { RedisResyncReport } from "../bench/redis.ts";

function run(
  catchup: Partial<CatchupReport>,
  redis?: Partial<RedisResyncReport> | { error: string },
): RunResult {
  const c = {
    records: 1_000_000,
    persistence: true,
    startupMs: 800,
    catchupMs: 4_000,
    totalMs: 4_800,
    ...catchup,
  } as CatchupReport;
  return {
    meta: { quick: false },
    reports: {},
    catchup: [c],
    ...(redis ? { catchupRedis: { members: 1_000_000, linkUpMs: 100, held: 0, ...redis } } : {}),
    targets: [],
    chart: {},
  } as unknown as RunResult;
}

const catchUpTarget = (r: RunResult) =>
  judgeTargets(r).find((t) => t.name === "Catch-up of 1M missed records, persistence on")!;
const againstRedis = (r: RunResult) =>
  judgeTargets(r).find((t) => t.name.startsWith("Catch-up of 1M") && t.name.endsWith("Redis"))!;

Deno.test("bench targets: a catch-up of fewer records than planned says so and is not judged", () => {
  // The loader gave up at 516,882 of 1,000,000: the line said "for 1,000,000 records".
  const t = catchUpTarget(run({ target: 516_882, held: 516_882 }));
  assert.match(t.measured, /for 516,882 records \(of 1,000,000 planned: the load lost some\)/);
  assert.deepEqual(t.met, null);
});

Deno.test("bench targets: a whole 1M catch-up is judged on 5 s, and on Redis only when measured", () => {
  const t = catchUpTarget(run({ target: 1_000_000, held: 1_000_000 }));
  assert.match(t.measured, /^4\.80 s from restart .* for 1,000,000 records$/);
  assert.deepEqual(t.met, true);
  const r = againstRedis(run({ target: 1_000_000, held: 1_000_000 }));
  assert.match(r.measured, /; Redis not measured$/);
  assert.deepEqual(r.met, null); // no Redis figure: not judged, and said so
  const slow = catchUpTarget(run({ target: 999_999, totalMs: 9_000 }));
  assert.deepEqual(slow.met, false);
});

Deno.test("bench targets: the catch-up part's own Redis resync judges the second half", () => {
  const c = { target: 1_000_000, held: 1_000_000 };
  const faster = againstRedis(run(c, { totalMs: 3_000 }));
  assert.match(
    faster.measured,
    /Redis replica restarted empty \(this part\): 3\.00 s for 1,000,000/,
  );
  assert.deepEqual(faster.met, false);
  assert.deepEqual(catchUpTarget(run(c, { totalMs: 3_000 })).met, true); // the halves apart
  assert.deepEqual(againstRedis(run(c, { totalMs: 6_000 })).met, true);
  // A smaller resync (a quick compare part's 100,000) is no baseline for 1M.
  assert.deepEqual(againstRedis(run(c, { totalMs: 300, members: 100_000 })).met, null);
  const skipped = againstRedis(run(c, { error: "redis-server missing" }));
  assert.match(skipped.measured, /Redis resync failed or skipped: redis-server missing/);
  assert.deepEqual(skipped.met, null);
});
