/**
 * Command-line flags for every subcommand, driven by the options table (servers/options.ts):
 * parsed with node:util parseArgs, checked (a flag the subcommand does not use, or two that
 * contradict each other, is refused), and turned into one clear line (exit status 2) when wrong.
 * The same table prints each subcommand's `--help`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { envToken, parseAllowedHosts, tokenProblem } from "../dashboard/security.ts";
import {
  flagName,
  type OptionName,
  OPTIONS,
  type OptionSpec,
  type OptionValues,
  type Subcommand,
} from "../servers/options.ts";
import { didYouMean } from "../servers/suggest.ts";
import { CLOCK_OFFSET_VARIABLE, clockOffsetText, parseClockOffset } from "../servers/clock.ts";

/** A usage problem: printed as one line, exit status 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/**
 * A parseArgs failure as a one-line {@linkcode UsageError} (its messages run to several
 * sentences; the first says what is wrong), with a hint for a misspelt flag.
 *
 * @example
 * ```ts
 * import { parseArgs } from "node:util";
 *
 * try { parseArgs({ args: ["--nope"], options: {} }); } catch (e) { throw usageFromParseError(e); }
 * ```
 */
export function usageFromParseError(err: unknown, known: Iterable<string> = []): UsageError {
  // The first sentence, whether the next one follows on the same line or the next.
  const text = String((err as Error).message).split(/\.(?:\s|$)/)[0].trim();
  // A value that is missing (the next word is a flag) or starts with a dash (a negative number).
  const ambiguous = /^Option '(--[^']+)' argument is ambiguous/.exec(text)?.[1];
  if (ambiguous !== undefined) {
    return new UsageError(
      `${ambiguous} needs a value (one starting with a dash is written ${ambiguous}=-VALUE)`,
    );
  }
  const unknown = /^Unknown option '--([^']+)'/.exec(text)?.[1];
  return new UsageError(text + (unknown === undefined ? "" : didYouMean(unknown, known, "--")));
}

/** Parsed flags of one subcommand: every option (defaults applied) and the positionals. */
export type HerdFlags = OptionValues & {
  positionals: string[];
  /** The options given on the command line (not defaulted). */
  given: ReadonlySet<OptionName>;
};

/**
 * Refuses an unusable `HERD_DASHBOARD_TOKEN` (dashboard/security.ts `tokenProblem`) before
 * anything starts: one line, exit 2, not a dashboard whose every control request is refused.
 *
 * @example
 * ```ts
 * checkDashboardToken(); // throws UsageError for HERD_DASHBOARD_TOKEN="two words"
 * ```
 */
export function checkDashboardToken(): void {
  const token = envToken();
  const problem = token === undefined ? undefined : tokenProblem(token);
  if (problem !== undefined) throw new UsageError(`HERD_DASHBOARD_TOKEN ${problem}`);
}

/**
 * Refuses a `HERD_CLOCK_OFFSET_MS` that is not a whole number of ms: one line, exit 2. Found by an
 * adversarial review (adv16): `abc` (or `1e3`, `5.5`) was ignored, and the server ran at its real
 * clock while the user believed it skewed.
 *
 * @example
 * ```ts
 * checkClockOffset(); // throws UsageError for HERD_CLOCK_OFFSET_MS=abc
 * ```
 */
export function checkClockOffset(): void {
  const text = clockOffsetText();
  if (text === undefined) return;
  const parsed = parseClockOffset(text);
  if ("problem" in parsed) throw new UsageError(`${CLOCK_OFFSET_VARIABLE} ${parsed.problem}`);
}

/**
 * Refuses a host flag's value that nothing can listen on (`999.1.1.1`, a name that does not
 * resolve) before any server listens: one line naming the flag, exit 2. Found by a review: the
 * five servers of `start` came up and printed "listening", then a bare resolver error ended the
 * process with exit 1 (adv10a #5). Binds port 0 there for a moment; a permission the process
 * lacks is the caller's own error, raised later where it listens.
 *
 * @example
 * ```ts
 * checkListenHost("--dashboard-host", "127.0.0.1"); // fine
 * checkListenHost("--ops-host", "999.1.1.1"); // throws UsageError
 * ```
 */
export function checkListenHost(flag: string, host: string): void {
  try {
    Deno.listen({ hostname: host, port: 0 }).close();
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
      return;
    }
    const why = (err as Error).message.replace(/\s+/g, " ").slice(0, 200);
    throw new UsageError(`${flag} ${JSON.stringify(host)}: cannot listen there (${why})`);
  }
}

/**
 * Where a herd process keeps its small state files (remembered link ports, the offline Places
 * index): the data dir, else (`--memory`) the log dir.
 *
 * @example
 * ```ts
 * stateDir(parseHerdFlags(["--memory", "--log-dir", "/tmp/logs"])); // "/tmp/logs"
 * ```
 */
export function stateDir(flags: HerdFlags): string {
  return flags.dataDir || flags.logDir;
}

/**
 * The ports this run's flags claim for themselves (the ops endpoint's): never taken as a
 * remembered link port.
 *
 * @example
 * ```ts
 * portsClaimed(parseHerdFlags(["--ops-port", "9100"])); // [9100]
 * ```
 */
export function portsClaimed(flags: HerdFlags): number[] {
  return flags.opsPort === undefined ? [] : [flags.opsPort];
}

const NAMES = Object.keys(OPTIONS) as OptionName[];

/** The usage lines of each subcommand. */
const USAGE: Record<Subcommand, string> = {
  start:
    "deno task start [options]\n  every server of the herd in this process, plus the dashboard",
  server: "deno task server NAME [options]\n  one server of the herd (NAME from the config)",
  dashboard: "deno task dashboard --config FILE [options]\n" +
    "  the dashboard for a herd of `server` processes (needs the herd secret)",
  client: "deno task client [options] TARGET [COMMAND]\n" +
    "  TARGET   a server name from the config (e.g. Hill) or HOST:PORT\n" +
    "  COMMAND  one protocol command (without it, every line of stdin is sent); an IAMAT time\n" +
    "           of 'now' is replaced by the current time.\n" +
    "  Exit status: 0 when every reply is valid, 1 when any is '?', 2 on a usage or connection error",
};

const ENVIRONMENT: Record<Subcommand, string> = {
  start: "HERD_SECRET, GOOGLE_PLACES_API_KEY, HERD_DASHBOARD_TOKEN",
  server: "HERD_SECRET, GOOGLE_PLACES_API_KEY",
  dashboard: "HERD_SECRET, HERD_DASHBOARD_TOKEN",
  client: "",
};

/** Shows a default the way a user would type it. */
function shownDefault(spec: OptionSpec): string | undefined {
  if (spec.type === "boolean" || spec.default === undefined) return undefined;
  if (spec.type === "list") return spec.default.length ? spec.default.join(",") : undefined;
  return spec.default === "" ? "''" : String(spec.default);
}

/** Wraps help text to the width of a terminal, indented under its column. */
function wrap(text: string, indent: number, width = 100): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && indent + line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  lines.push(line);
  return lines.join("\n" + " ".repeat(indent));
}

/**
 * The help of one subcommand: its usage and only the options it uses, from the table.
 *
 * @example
 * ```ts
 * console.log(helpFor("dashboard")); // no --sync-ack in it
 * ```
 */
export function helpFor(command: Subcommand): string {
  const rows: [string, string][] = [];
  for (const name of NAMES) {
    const spec: OptionSpec = OPTIONS[name];
    if (!spec.commands.includes(command)) continue;
    const arg = spec.type === "choice" ? spec.choices.join("|") : "arg" in spec ? spec.arg : "";
    const dflt = shownDefault(spec);
    rows.push([
      (spec.short ? `-${spec.short}, ` : "") + `--${flagName(name)}` + (arg ? ` ${arg}` : ""),
      spec.help + (dflt === undefined ? "" : ` (default ${dflt})`),
    ]);
  }
  const col = 2 + Math.min(32, Math.max(...rows.map(([f]) => f.length))) + 2;
  const options = rows.map(([f, h]) => {
    const head = `  ${f}`;
    const pad = head.length + 2 > col ? `\n${" ".repeat(col)}` : " ".repeat(col - head.length);
    return head + pad + wrap(h, col);
  });
  const env = ENVIRONMENT[command];
  return `Usage: ${USAGE[command]}\n\nOptions:\n${options.join("\n")}` +
    (env ? `\n\nEnvironment: ${env}.` : "");
}

/** The overview `main.ts --help` prints. */
export const OVERVIEW =
  `Usage: deno task start [options]         every server in one process, plus the dashboard
       deno task server NAME [options]   one server of the herd
       deno task client TARGET [COMMAND] send a command, print the replies
       deno task dashboard --config FILE the dashboard for a herd of server processes

Each subcommand's own options: deno task <subcommand> --help. Version: --version.`;

/** Pairs that contradict each other when both are given. */
const CONTRADICTIONS: [OptionName, OptionName, string][] = [
  ["memory", "dataDir", "--memory keeps records in memory only"],
];

/** Options that only the dashboard uses: refused with `--no-dashboard`. */
const DASHBOARD_ONLY: OptionName[] = ["dashboardPort", "dashboardHost", "dashboardAllowedHosts"];

/** Options that only the Google providers use: refused with the offline one. */
export const GOOGLE_ONLY: OptionName[] = [
  "placesUrl",
  "placesTimeoutMs",
  "placesConcurrency",
  "placesCacheTtl",
];

function intValue(name: OptionName, spec: OptionSpec & { type: "int" }, value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < spec.min || Number(value) > spec.max) {
    throw new UsageError(
      `--${flagName(name)} must be an integer from ${spec.min} to ${spec.max}, got ${
        JSON.stringify(value)
      }`,
    );
  }
  return Number(value);
}

/**
 * Parses one subcommand's flags. Throws {@linkcode UsageError} with one clear line for an unknown
 * flag, a flag this subcommand does not use, a bad value, or a contradictory pair.
 *
 * @example
 * ```ts
 * parseFlags("server", ["Hill", "--memory"]).dataDir; // ""
 * parseFlags("dashboard", ["--sync-ack"]); // throws: dashboard does not use --sync-ack
 * ```
 */
export function parseFlags(command: Subcommand, args: string[]): HerdFlags {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {};
  const byFlag = new Map<string, OptionName>();
  for (const name of NAMES) {
    const spec: OptionSpec = OPTIONS[name];
    options[flagName(name)] = {
      type: spec.type === "boolean" ? "boolean" : "string",
      ...(spec.short ? { short: spec.short } : {}),
    };
    byFlag.set(flagName(name), name);
  }
  const mine = NAMES.filter((n) => (OPTIONS[n] as OptionSpec).commands.includes(command))
    .map(flagName);
  let parsed;
  try {
    parsed = parseArgs({ args, allowPositionals: true, strict: true, options, tokens: true });
  } catch (err) {
    throw usageFromParseError(err, mine);
  }
  // The first flag this subcommand does not use, or the first given twice, in the order given.
  // Twice is refused rather than "the last wins": `--port 1 ... --port 2` is a mistake in a
  // long command line or a script, and silently taking either hides it.
  const seen = new Set<string>();
  for (const t of parsed.tokens) {
    if (t.kind !== "option") continue;
    const name = byFlag.get(t.name)!;
    if (!(OPTIONS[name] as OptionSpec).commands.includes(command)) {
      throw new UsageError(
        `${command} does not use --${t.name}${didYouMean(t.name, mine, "--")} ` +
          `(see deno task ${command} --help)`,
      );
    }
    if (seen.has(name)) throw new UsageError(`${t.rawName} is given twice: give it once`);
    seen.add(name);
  }
  const given = new Set<OptionName>();
  const out: Record<string, unknown> = {};
  for (const name of NAMES) {
    const spec: OptionSpec = OPTIONS[name];
    const raw = (parsed.values as Record<string, string | boolean | undefined>)[flagName(name)];
    if (raw !== undefined) given.add(name);
    switch (spec.type) {
      case "boolean":
        out[name] = raw === undefined ? spec.default : spec.negate ? !raw : raw;
        break;
      case "int":
        out[name] = raw === undefined ? spec.default : intValue(name, spec, raw as string);
        break;
      case "choice":
        if (raw !== undefined && !spec.choices.includes(raw as string)) {
          throw new UsageError(
            `--${flagName(name)} must be ${spec.choices.slice(0, -1).join(", ")} or ${
              spec.choices.at(-1)
            }, got ${JSON.stringify(raw)}`,
          );
        }
        out[name] = raw ?? spec.default;
        break;
      case "list":
        out[name] = raw === undefined
          ? [...spec.default]
          : (raw as string).split(",").map((h) => h.trim()).filter((h) => h !== "");
        break;
      case "string":
        // `--log-dir ""` would be the filesystem's root, `--dashboard-host ""` an error only
        // once the herd had started: an empty value is a mistake unless it means something.
        if (raw === "" && !spec.empty) {
          throw new UsageError(`--${flagName(name)} needs a ${spec.arg}, got ""`);
        }
        out[name] = raw ?? spec.default;
    }
  }
  const flags = { ...out, positionals: parsed.positionals, given } as unknown as HerdFlags;
  for (const [a, b, why] of CONTRADICTIONS) {
    if (given.has(a) && given.has(b)) {
      throw new UsageError(`--${flagName(a)} contradicts --${flagName(b)}: ${why}`);
    }
  }
  if (!flags.dashboard) refuseGiven(flags, DASHBOARD_ONLY, "--no-dashboard serves no dashboard");
  if (given.has("opsHost") && flags.opsPort === undefined) {
    throw new UsageError(
      "--ops-host needs --ops-port (the address of the ops endpoint's own port)",
    );
  }
  if (flags.places === "offline") {
    refuseGiven(flags, GOOGLE_ONLY, "--places offline asks Google nothing");
  }
  if (flags.memory) flags.dataDir = "";
  if (flags.syncAck && flags.dataDir === "") {
    throw new UsageError(
      "--sync-ack waits for the disk, and records are in memory only (--memory or --data-dir '')",
    );
  }
  try {
    parseAllowedHosts(flags.dashboardAllowedHosts);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return flags;
}

/**
 * Throws a {@linkcode UsageError} when any of `names` was given: `why` says what makes it unused.
 *
 * @example
 * ```ts
 * declare const flags: HerdFlags;
 * refuseGiven(flags, GOOGLE_ONLY, "the offline provider asks Google nothing");
 * ```
 */
export function refuseGiven(flags: HerdFlags, names: readonly OptionName[], why: string): void {
  const hit = names.find((n) => flags.given.has(n));
  if (hit !== undefined) throw new UsageError(`--${flagName(hit)} is not used: ${why}`);
}

/**
 * Parses `start` flags (kept for callers that only check the herd's flags).
 *
 * @example
 * ```ts
 * parseHerdFlags(["--log-dir", "/tmp/logs", "--memory"]).dataDir; // ""
 * ```
 */
export function parseHerdFlags(args: string[]): HerdFlags {
  return parseFlags("start", args);
}
