/**
 * The proxy herd's entry point.
 *
 *   deno task start [flags]          every server of the herd in this process, plus the dashboard
 *   deno task server NAME [flags]    one server of the herd in this process
 *   deno task client TARGET [CMD]    send a command and print the reply
 *   deno task dashboard [flags]      the dashboard for a herd of `server` processes
 *
 * Usage errors print one line and exit with status 2.
 *
 * @module
 */

import { FLAGS_HELP, parseHerdFlags, UsageError } from "./cli/flags.ts";
import { runHerd } from "./cli/run.ts";
import { runClient } from "./cli/client.ts";
import { ConfigError } from "./servers/config.ts";
import { dashboardHooks, runRemoteDashboard } from "./cli/dashboard.ts";

const USAGE = `Usage: deno task start [options]
       deno task server NAME [options]
       deno task client TARGET [COMMAND]
       deno task dashboard --config FILE [options]

${FLAGS_HELP}`;

async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  switch (command) {
    case "start":
    case "server": {
      const flags = parseHerdFlags(rest);
      if (flags.help) {
        console.log(USAGE);
        return 0;
      }
      // One dashboard per herd: `start` serves it; `server` processes are watched by `dashboard`.
      return await runHerd(command, flags, command === "start" ? dashboardHooks : {});
    }
    case "dashboard": {
      const flags = parseHerdFlags(rest);
      if (flags.help) {
        console.log(USAGE);
        return 0;
      }
      return await runRemoteDashboard(flags);
    }
    case "client":
      return await runClient(rest);
    case "--help":
    case "-h":
    case undefined:
      console.log(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(
        `unknown command ${JSON.stringify(command)} (start, server, client, dashboard)`,
      );
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError) {
      console.error(`error: ${err.message}`);
      Deno.exit(2);
    }
    throw err;
  }
}
