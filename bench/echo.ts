/**
 * The echo part: the Deno line-echo floor (bench/echo_server.ts) at each connection count, open
 * loop at half of its peak, and at our herd's half-peak rate.
 *
 * @module
 */

import { measure, type Plan, type Point, type Proc, progress, startProcess } from "./common.ts";
import { type HerdReport, measureHalfPeak } from "./herd.ts";

/**
 * Starts bench/echo_server.ts on a free port, logging to `log`: `line` echoes lines back, `at`
 * answers each IAMAT with an AT line (decoding and building the reply, no protocol checks).
 */
export async function startEcho(
  log: string,
  reply: "line" | "at" = "line",
): Promise<{ proc: Proc; port: number }> {
  const proc = await startProcess(
    Deno.execPath(),
    ["run", "-A", "bench/echo_server.ts", "--port", "0", "--reply", reply],
    log,
    { ready: /^READY \d+/ },
  );
  return { proc, port: Number(proc.readyLine.split(" ")[1]) };
}

/** The echo floor at a given open-loop rate over the half-peak connections. */
export async function echoAtRate(plan: Plan, logDir: string, rate: number): Promise<Point> {
  const { proc, port } = await startEcho(`${logDir}/echo-at-rate.log`);
  try {
    progress(`[echo baseline] at our herd's half-peak rate: ${Math.round(rate)} req/s open loop`);
    return (await measure(plan, "echo baseline", port, "echo", plan.halfPeakConnections, rate))[0];
  } finally {
    await proc.stop();
  }
}

export async function benchEcho(plan: Plan, logDir: string): Promise<HerdReport> {
  const { proc, port } = await startEcho(`${logDir}/echo.log`);
  try {
    const points: Point[] = [];
    for (const c of plan.connections) {
      progress(`[echo baseline] echo x ${c} connections`);
      points.push((await measure(plan, "echo baseline", port, "echo", c))[0]);
    }
    const halfPeak = await measureHalfPeak(plan, "echo baseline", port, "echo", points);
    return { points, halfPeak, propagation: null };
  } finally {
    await proc.stop();
  }
}
