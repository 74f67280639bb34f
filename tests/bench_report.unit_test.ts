/**
 * The bench's target verdicts (bench/report.ts `judgeTargets`): a catch-up is judged on the
 * records the other servers agreed on, and a load that lost many is no 1M run.
 */

import assert from "node:assert/strict";
import { judgeTargets, type RunResult } from "../bench/report.ts";
import type { CatchupReport } from "../bench/catchup.ts";

function run(catchup: Partial<CatchupReport>): RunResult {
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
    targets: [],
    chart: {},
  } as unknown as RunResult;
}

const catchUpTarget = (r: RunResult) =>
  judgeTargets(r).find((t) => t.name.startsWith("Catch-up of 1M"))!;

Deno.test("bench targets: a catch-up of fewer records than planned says so and is not judged", () => {
  // The loader gave up at 516,882 of 1,000,000: the line said "for 1,000,000 records".
  const t = catchUpTarget(run({ target: 516_882, held: 516_882 }));
  assert.match(t.measured, /for 516,882 records \(of 1,000,000 planned: the load lost some\)/);
  assert.deepEqual(t.met, null);
});

Deno.test("bench targets: a whole 1M catch-up is judged, against Redis when measured", () => {
  const t = catchUpTarget(run({ target: 1_000_000, held: 1_000_000 }));
  assert.match(t.measured, /^4\.80 s from restart .* for 1,000,000 records; Redis not measured/);
  assert.deepEqual(t.met, false); // no Redis figure to be at most
  const slow = catchUpTarget(run({ target: 999_999, totalMs: 9_000 }));
  assert.deepEqual(slow.met, false);
});
