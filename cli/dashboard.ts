/**
 * Wires the dashboard to the command line (temporary: filled in when web/app.ts lands).
 *
 * @module
 */

import type { RunHooks } from "./run.ts";
import type { HerdFlags } from "./flags.ts";

/** Hooks that serve the dashboard beside an in-process herd. */
export const dashboardHooks: RunHooks = {};

/** Runs the dashboard for a herd of separate server processes. */
export function runRemoteDashboard(_flags: HerdFlags): Promise<number> {
  console.error("dashboard: not available yet");
  return Promise.resolve(1);
}
