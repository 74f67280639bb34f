/**
 * Every command-line option in one table: its name, type, default, the subcommands that use it
 * and its help text. The table drives both parsing (cli/flags.ts) and `--help`, and
 * {@linkcode SERVER_DEFAULTS} takes its numbers from it, so a default lives in one place only.
 *
 * @module
 */

import type { ConnectionOptions } from "./connection.ts";
import { DEFAULT_LINE_LIMIT } from "./lines.ts";
import { DEFAULT_LINK_OPTIONS, type LinkOptions } from "./link_options.ts";

/** The subcommands of main.ts. */
export type Subcommand = "start" | "server" | "dashboard" | "client";

const HERD = ["start", "server"] as const;
const WEB = ["start", "dashboard"] as const;
const ALL = ["start", "server", "dashboard", "client"] as const;

interface Common {
  /** The subcommands that use it; any other refuses it (exit 2). */
  commands: readonly Subcommand[];
  help: string;
  /** The flag's name when it is not the key in kebab case (e.g. `no-dashboard`). */
  flag?: string;
  short?: string;
}

/** One option of the table. */
export type OptionSpec =
  | Common & {
    type: "boolean";
    default: boolean;
    /** The flag sets the value to false (`--no-dashboard` → `dashboard: false`). */
    negate?: boolean;
  }
  | Common & {
    type: "string";
    arg: string;
    default?: string;
    /** `""` means something (`--data-dir ''`: records in memory); else an empty value is refused. */
    empty?: boolean;
  }
  | Common & { type: "int"; arg: string; default?: number; min: number; max: number }
  | Common & { type: "choice"; choices: readonly string[]; default?: string }
  | Common & { type: "list"; arg: string; default: readonly string[] };

/** The options, in help order. */
export const OPTIONS = {
  config: {
    type: "string",
    arg: "FILE",
    commands: ALL,
    help: "herd config JSON (default: the seed's five servers on 12000-12004)",
  },
  logDir: {
    type: "string",
    arg: "DIR",
    default: "./logs",
    commands: HERD,
    help: "one log file per server (SIGHUP reopens them)",
  },
  logFormat: {
    type: "choice",
    choices: ["text", "json"],
    default: "text",
    commands: HERD,
    help: "log lines as escaped text, or one JSON object each",
  },
  dataDir: {
    type: "string",
    arg: "DIR",
    default: "./data",
    empty: true,
    commands: HERD,
    help: "durable records, one store per server ('' = off)",
  },
  memory: {
    type: "boolean",
    default: false,
    commands: HERD,
    help: "keep records in memory only (same as --data-dir '')",
  },
  syncAck: {
    type: "boolean",
    default: false,
    commands: HERD,
    help: "reply to an IAMAT only once its record is on disk (slower, stricter)",
  },
  fullFlood: {
    type: "boolean",
    default: false,
    commands: HERD,
    help: "send every record on every link, never along the flood's trees (for comparison)",
  },
  tcpLinks: {
    type: "boolean",
    default: false,
    commands: ["start"],
    help: "link the servers of this process over loopback TCP, not in memory (for comparison)",
  },
  dashboardPort: {
    type: "int",
    arg: "N",
    default: 8000,
    min: 0,
    max: 65535,
    commands: WEB,
    help: "dashboard HTTP port",
  },
  dashboardHost: {
    type: "string",
    arg: "HOST",
    default: "127.0.0.1",
    commands: WEB,
    help: "dashboard address",
  },
  dashboardAllowedHosts: {
    type: "list",
    arg: "H,H",
    default: [],
    commands: WEB,
    help: "more names the dashboard answers to in Host: host (any port) or host:port " +
      "(default: the listen address's names; loopback names only on a wildcard address)",
  },
  dashboard: {
    type: "boolean",
    flag: "no-dashboard",
    negate: true,
    default: true,
    commands: ["start"],
    help: "do not serve the dashboard",
  },
  opsPort: {
    type: "int",
    arg: "N",
    min: 0,
    max: 65535,
    commands: HERD,
    help: "serve /metrics, /healthz and /status on port N (start serves them on the dashboard " +
      "port; with --no-dashboard only here)",
  },
  opsHost: {
    type: "string",
    arg: "HOST",
    default: "127.0.0.1",
    commands: HERD,
    help: "the ops endpoint's address",
  },
  partialLineMs: {
    type: "int",
    arg: "N",
    default: 500,
    min: 0,
    max: 3_600_000,
    commands: HERD,
    help: "answer an unterminated line after N ms of silence (0 off)",
  },
  idleTimeoutMs: {
    type: "int",
    arg: "N",
    default: 300_000,
    min: 0,
    max: 86_400_000,
    commands: HERD,
    help: "close idle client connections, and those not reading their replies, after N ms (0 off)",
  },
  maxConnections: {
    type: "int",
    arg: "N",
    default: 10_000,
    min: 1,
    max: 1_000_000,
    commands: HERD,
    help: "client connections per server",
  },
  maxPendingReplies: {
    type: "int",
    arg: "N",
    default: 1024,
    min: 1,
    max: 1_000_000,
    commands: HERD,
    help: "stop reading a client with N replies unwritten",
  },
  replyBudgetMib: {
    type: "int",
    arg: "N",
    default: 64,
    min: 1,
    max: 65_536,
    commands: HERD,
    help: "reply MiB buffered per process before pausing, then cutting, the biggest holders",
  },
  maxRecordsMib: {
    type: "int",
    arg: "N",
    min: 1,
    max: 1_048_576,
    commands: HERD,
    help:
      "MiB of records a process holds; past it new clients' IAMATs get ? (default: about half the JS heap limit)",
  },
  whatsatGraceMs: {
    type: "int",
    arg: "N",
    default: 250,
    min: 0,
    max: 60_000,
    commands: HERD,
    help: "wait up to N ms for a client's record to arrive",
  },
  maxFutureS: {
    type: "int",
    arg: "N",
    default: 86_400,
    min: 0,
    max: 3_153_600_000,
    commands: HERD,
    help: "an IAMAT time more than N s ahead of the server clock is invalid",
  },
  receiptWaitMs: {
    type: "int",
    arg: "N",
    default: 50,
    min: 0,
    max: 60_000,
    commands: HERD,
    help: "the AT reply waits up to N ms for neighbours' receipts (0 off)",
  },
  places: {
    type: "choice",
    choices: ["offline", "new", "legacy"],
    commands: HERD,
    help: "WHATSAT answers from (default: new with GOOGLE_PLACES_API_KEY, else offline)",
  },
  placesUrl: {
    type: "string",
    arg: "URL",
    commands: HERD,
    help:
      "replace Google's origin (a proxy, or a fake in tests; Google providers only; no user:password@, ?query or #fragment)",
  },
  placesTimeoutMs: {
    type: "int",
    arg: "N",
    default: 5000,
    min: 1,
    max: 600_000,
    commands: HERD,
    help: "Places deadline per query (Google providers only)",
  },
  placesConcurrency: {
    type: "int",
    arg: "N",
    default: 16,
    min: 1,
    max: 10_000,
    commands: HERD,
    help: "Places requests in flight (Google providers only)",
  },
  placesCacheTtl: {
    type: "int",
    arg: "S",
    default: 0,
    min: 0,
    max: 86_400 * 30,
    commands: HERD,
    help: "cache Places answers for S seconds (Google providers only)",
  },
  json: {
    type: "boolean",
    default: false,
    commands: ["client"],
    help: "print one JSON object per reply",
  },
  timeoutMs: {
    type: "int",
    arg: "N",
    default: 30_000,
    min: 0,
    max: 86_400_000,
    commands: ["client"],
    help: "give up (exit 2) after N ms without a byte from the server while replies are owed, " +
      "or after the last command until it closes (0 off)",
  },
  version: {
    type: "boolean",
    default: false,
    commands: ALL,
    help: "print the version and exit",
  },
  help: {
    type: "boolean",
    short: "h",
    default: false,
    commands: ALL,
    help: "show this help",
  },
} as const satisfies Record<string, OptionSpec>;

/** An option's key in {@linkcode OPTIONS}. */
export type OptionName = keyof typeof OPTIONS;

type ValueOf<S> = S extends { type: "boolean" } ? boolean
  : S extends { type: "int" } ? S extends { default: number } ? number : number | undefined
  : S extends { type: "list" } ? string[]
  : S extends { type: "choice"; choices: readonly (infer C)[] }
    ? S extends { default: string } ? C : C | undefined
  : S extends { default: string } ? string
  : string | undefined;

/** Every option's parsed value, defaults applied. */
export type OptionValues = { -readonly [K in OptionName]: ValueOf<(typeof OPTIONS)[K]> };

/**
 * An option's flag name, without the dashes.
 *
 * @example
 * ```ts
 * flagName("logDir"); // "log-dir"
 * ```
 */
export function flagName(name: OptionName): string {
  const spec: OptionSpec = OPTIONS[name];
  return spec.flag ?? name.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}

/** Server tunables that have defaults (everything but the Places provider). */
export interface ServerDefaults extends ConnectionOptions {
  whatsatGraceMs: number;
  maxFutureS: number;
  receiptWaitMs: number;
  maxConnections: number;
  link: LinkOptions;
}

/**
 * The defaults, from {@linkcode OPTIONS}: 64 KiB lines, 500 ms partial lines, 5 min idle timeout,
 * 1024 pending replies, 250 ms WHATSAT grace, IAMAT times at most a day ahead, a wait of up to
 * 50 ms for neighbours' receipt of a new record, 10,000 connections per server.
 *
 * @example
 * ```ts
 * import { createOfflineProvider } from "./places/offline.ts";
 *
 * const places = createOfflineProvider();
 * const secret = Deno.env.get("HERD_SECRET")!;
 * const opts = { ...SERVER_DEFAULTS, places, secret };
 * ```
 */
export const SERVER_DEFAULTS: ServerDefaults = {
  lineLimit: DEFAULT_LINE_LIMIT,
  partialLineMs: OPTIONS.partialLineMs.default,
  idleTimeoutMs: OPTIONS.idleTimeoutMs.default,
  maxPendingReplies: OPTIONS.maxPendingReplies.default,
  whatsatGraceMs: OPTIONS.whatsatGraceMs.default,
  maxFutureS: OPTIONS.maxFutureS.default,
  receiptWaitMs: OPTIONS.receiptWaitMs.default,
  maxConnections: OPTIONS.maxConnections.default,
  link: DEFAULT_LINK_OPTIONS,
};
