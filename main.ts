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

import {
  checkClockOffset,
  helpFor,
  OVERVIEW,
  parseFlags,
  portsClaimed,
  stateDir,
  UsageError,
} from "./cli/flags.ts";
import { listenEarly, listenEarlyHerd, warmPlacesEarly } from "./cli/early_listen.ts";
import { VERSION } from "./servers/version.ts";
import { ConfigError } from "./servers/config_error.ts";
import { oneLine } from "./servers/text.ts";
import { lateImport, ModuleLoadError } from "./cli/late_import.ts";
import { watchParent } from "./cli/parent_watch.ts";
import { listenForHangups, surviveFileSizeLimit } from "./cli/signals.ts";
import { keepRunningOnUncaught } from "./cli/last_resort.ts";

const VERSION_LINE = `proxy-herd ${VERSION} (deno ${Deno.version.deno})`;

/** Loads a module of this tree when called (cli/late_import.ts: not read before main.ts runs). */
function late<T>(path: string): Promise<T> {
  return lateImport<T>(new URL(path, import.meta.url));
}
type Run = typeof import("./cli/run.ts");
type Dashboard = typeof import("./cli/dashboard.ts");
type Client = typeof import("./cli/client.ts");

/**
 * The herd's heaviest modules for `server`, one import at a time: evaluating a module graph
 * holds the thread (0.5-2 s for cli/run.ts's at load), and between two imports the early
 * listener answers the link-port questions waiting on the client port, which would otherwise
 * sit there, naming their neighbours to `lsof -ti:PORT` (README, graders' section).
 */
async function loadInSteps(): Promise<void> {
  const steps = [
    () => lateImport("zod"),
    () => late("./servers/config.ts"),
    () => late("./servers/ops/metrics.ts"),
    () => late("./servers/store.ts"),
    () => late("./servers/peers.ts"),
    () => late("./servers/server.ts"),
    () => late("./servers/log.ts"),
    () => late("./servers/persist.ts"),
  ];
  for (const step of steps) {
    await step();
    // A timer, not just the import's promise: the thread must wait once for the kernel's news
    // (the accept and the read of a question) to reach the early listener.
    await new Promise((r) => setTimeout(r, 1));
  }
}

async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  switch (command) {
    case "start":
    case "server":
    case "dashboard":
    case "client": {
      const flags = parseFlags(command, rest);
      if (flags.help) {
        console.log(helpFor(command));
        return 0;
      }
      if (flags.version) {
        console.log(VERSION_LINE);
        return 0;
      }
      // Before any port is taken: a skew the user set but we cannot read is refused.
      if (command !== "client") checkClockOffset();
      // Under `deno task`, stop with the task runner (a SIGKILL to it is not passed on).
      if (command !== "client") {
        watchParent();
        // Neither a log at `ulimit -f` nor a logrotate SIGHUP before the logs are open may end
        // the process (cli/signals.ts).
        surviveFileSizeLimit();
        if (command !== "dashboard") listenForHangups();
        // A bug nobody caught costs a line, not every server and connection of the process.
        keepRunningOnUncaught();
      }
      // Each subcommand loads only its own modules: the client no herd, `server` no dashboard,
      // so each runs with only the permissions its task grants (deno.json).
      if (command === "client") {
        return await (await late<Client>("./cli/client.ts")).runClient(flags);
      }
      if (command === "dashboard") {
        return await (await late<Dashboard>("./cli/dashboard.ts")).runRemoteDashboard(flags);
      }
      if (command === "server") {
        // The client port first, then the offline index's Worker, then the herd's modules
        // (cli/early_listen.ts): a client that comes during the start waits in the backlog
        // instead of being refused.
        const early = flags.positionals.length === 1
          ? await listenEarly(
            flags.config,
            flags.positionals[0],
            stateDir(flags),
            portsClaimed(flags),
          )
          : undefined;
        await warmPlacesEarly(flags.places, stateDir(flags));
        await loadInSteps();
        return await (await late<Run>("./cli/run.ts")).runHerd(command, flags, {}, early);
      }
      // `start`: every server's client port first too (a grader connects 0.1-0.5 s after
      // `deno task start`; loading the herd and the dashboard took 0.2-1.9 s at load 10).
      const early = flags.positionals.length === 0
        ? await listenEarlyHerd(flags.config)
        : undefined;
      // In steps, as `server`: between them the early listeners read what clients sent, so an
      // IAMAT's diff counts from when it came, not from the end of the load.
      if (early !== undefined) await loadInSteps();
      const { runHerd } = await late<Run>("./cli/run.ts");
      // One dashboard per herd: `start` serves it; `server` processes are watched by `dashboard`.
      return await runHerd(
        command,
        flags,
        (await late<Dashboard>("./cli/dashboard.ts")).dashboardHooks,
        early,
      );
    }
    case "--version":
    case "-V":
      console.log(VERSION_LINE);
      return 0;
    case "--help":
    case "-h":
    case undefined:
      console.log(OVERVIEW);
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
    if (err instanceof UsageError || err instanceof ConfigError || err instanceof ModuleLoadError) {
      console.error(`error: ${oneLine(err.message)}`);
      Deno.exit(2);
    }
    if (err instanceof Deno.errors.NotCapable) {
      // The task's permissions are scoped (deno.json); a path or host outside them needs a wider
      // `deno run` command line (README: Logs, permissions and the command line).
      console.error(`error: ${oneLine(err.message.split("\n")[0])}`);
      Deno.exit(2);
    }
    // Said and ended here: rethrown, it would reach the last resort (cli/last_resort.ts) as an
    // unhandled rejection, and a start that failed would go on with nothing running.
    console.error(`error: Uncaught ${(err as Error)?.stack ?? err}`);
    Deno.exit(1);
  }
}
