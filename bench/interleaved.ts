/**
 * The throughput ratio with the machine's drift cancelled: the echo floor and our herd loaded in
 * turn (see {@linkcode Interleaved}).
 *
 * @module
 */

import { measure, type Plan, type Point, progress } from "./common.ts";
import { startEcho } from "./echo.ts";
import { type Interleaved, median } from "./herd.ts";
import type { HerdHandle } from "./herds.ts";

export async function measureInterleaved(
  plan: Plan,
  logDir: string,
  h: HerdHandle,
  rounds: number,
): Promise<Interleaved> {
  const { proc, port } = await startEcho(`${logDir}/echo-interleaved.log`);
  try {
    const c = plan.halfPeakConnections;
    const echo: Point[] = [];
    const herd: Point[] = [];
    for (let i = 0; i < rounds; i++) {
      progress(`[interleaved] round ${i + 1}/${rounds}: echo, then our herd, ${c} connections`);
      echo.push((await measure(plan, "echo baseline", port, "echo", c))[0]);
      herd.push((await measure(plan, h.label, h.ports[h.entry], "iamat", c))[0]);
    }
    echo.push((await measure(plan, "echo baseline", port, "echo", c))[0]);
    const ratios = herd.map((p, i) =>
      p.throughput / ((echo[i].throughput + echo[i + 1].throughput) / 2)
    );
    return { connections: c, echo, herd, ratios, median: median(ratios) };
  } finally {
    await proc.stop();
  }
}
