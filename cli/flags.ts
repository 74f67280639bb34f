/**
 * Command-line flags for `start`, `server` and `dashboard`: parsed with node:util parseArgs,
 * checked, and turned into one clear line (exit status 2) when wrong.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseAllowedHosts } from "../dashboard/security.ts";

/** A usage problem: printed as one line, exit status 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/**
 * A parseArgs failure as a one-line {@linkcode UsageError} (its messages run to several
 * sentences; the first says what is wrong).
 *
 * @example
 * ```ts
 * import { parseArgs } from "node:util";
 *
 * try { parseArgs({ args: ["--nope"], options: {} }); } catch (e) { throw usageFromParseError(e); }
 * ```
 */
export function usageFromParseError(err: unknown): UsageError {
  return new UsageError(String((err as Error).message).split(". ")[0].replace(/\.$/, ""));
}

/** Parsed herd flags. */
export interface HerdFlags {
  config?: string;
  logDir: string;
  /** Empty when persistence is off. */
  dataDir: string;
  syncAck: boolean;
  dashboardPort: number;
  dashboardHost: string;
  /** Extra names the dashboard answers to in `Host` (`host` or `host:port`). */
  dashboardAllowedHosts: string[];
  dashboard: boolean;
  /** The ops endpoint's port (/metrics, /healthz, /status); undefined: none of its own. */
  opsPort?: number;
  opsHost: string;
  partialLineMs: number;
  idleTimeoutMs: number;
  maxConnections: number;
  maxPendingReplies: number;
  /** Reply bytes buffered in the whole process before the biggest holders are paused (MiB). */
  replyBudgetMib: number;
  whatsatGraceMs: number;
  maxFutureS: number;
  receiptWaitMs: number;
  places?: "offline" | "new" | "legacy";
  placesUrl?: string;
  placesTimeoutMs: number;
  placesConcurrency: number;
  placesCacheTtl: number;
  help: boolean;
  positionals: string[];
}

/** The flags' help text. */
export const FLAGS_HELP = `Options:
  --config FILE             herd config JSON (default: the seed's five servers on 12000-12004)
  --log-dir DIR             one log file per server (default ./logs)
  --data-dir DIR            durable records, one store per server (default ./data; '' = off)
  --memory                  keep records in memory only (same as --data-dir '')
  --sync-ack                reply to an IAMAT only once its record is on disk (slower, stricter)
  --dashboard-port N        dashboard HTTP port (default 8000; start and dashboard only)
  --dashboard-host HOST     dashboard address (default 127.0.0.1)
  --dashboard-allowed-hosts H,H  more names the dashboard answers to in Host: host (any port) or
                            host:port (default: the listen address's names; loopback names only
                            on a wildcard address)
  --no-dashboard            do not serve the dashboard
  --ops-port N              serve /metrics, /healthz and /status on port N (start serves them on
                            the dashboard port too)
  --ops-host HOST           the ops endpoint's address (default 127.0.0.1)
  --partial-line-ms N       answer an unterminated line after N ms of silence (default 500; 0 off)
  --idle-timeout-ms N       close idle client connections after N ms (default 300000; 0 off)
  --max-connections N       client connections per server (default 10000)
  --max-pending-replies N   stop reading a client with N replies unwritten (default 1024)
  --reply-budget-mib N      reply bytes buffered per process before pausing, then cutting,
                            the connections holding the most (default 64)
  --whatsat-grace-ms N      wait up to N ms for a client's record to arrive (default 250)
  --max-future-s N          an IAMAT time more than N s ahead of the server clock is invalid (default 86400)
  --receipt-wait-ms N       the AT reply waits up to N ms for neighbours' receipts (default 50; 0 off)
  --places KIND             offline | new | legacy (default: new with GOOGLE_PLACES_API_KEY, else offline)
  --places-url URL          replace Google's origin (a proxy, or a fake in tests)
  --places-timeout-ms N     Places deadline per query (default 5000)
  --places-concurrency N    Places requests in flight (default 16)
  --places-cache-ttl S      cache Places answers for S seconds (default 0)
  --help                    show this help
Environment: HERD_SECRET (herd secret), GOOGLE_PLACES_API_KEY, HERD_DASHBOARD_TOKEN.`;

function intFlag(
  name: string,
  value: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new UsageError(
      `--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`,
    );
  }
  return Number(value);
}

/**
 * Parses herd flags. Throws {@linkcode UsageError} with one clear line.
 *
 * @example
 * ```ts
 * parseHerdFlags(["--log-dir", "/tmp/logs", "--memory"]).dataDir; // ""
 * ```
 */
export function parseHerdFlags(args: string[]): HerdFlags {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: "string" },
        "log-dir": { type: "string" },
        "data-dir": { type: "string" },
        memory: { type: "boolean" },
        "sync-ack": { type: "boolean" },
        "dashboard-port": { type: "string" },
        "dashboard-host": { type: "string" },
        "dashboard-allowed-hosts": { type: "string" },
        "no-dashboard": { type: "boolean" },
        "ops-port": { type: "string" },
        "ops-host": { type: "string" },
        "partial-line-ms": { type: "string" },
        "idle-timeout-ms": { type: "string" },
        "max-connections": { type: "string" },
        "max-pending-replies": { type: "string" },
        "reply-budget-mib": { type: "string" },
        "whatsat-grace-ms": { type: "string" },
        "max-future-s": { type: "string" },
        "receipt-wait-ms": { type: "string" },
        places: { type: "string" },
        "places-url": { type: "string" },
        "places-timeout-ms": { type: "string" },
        "places-concurrency": { type: "string" },
        "places-cache-ttl": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    throw usageFromParseError(err);
  }
  const v = parsed.values;
  const places = v.places;
  if (places !== undefined && places !== "offline" && places !== "new" && places !== "legacy") {
    throw new UsageError(`--places must be offline, new or legacy, got ${JSON.stringify(places)}`);
  }
  const dashboardAllowedHosts = (v["dashboard-allowed-hosts"] ?? "").split(",")
    .map((h) => h.trim()).filter((h) => h !== "");
  try {
    parseAllowedHosts(dashboardAllowedHosts);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return {
    config: v.config,
    logDir: v["log-dir"] ?? "./logs",
    dataDir: v.memory ? "" : v["data-dir"] ?? "./data",
    syncAck: v["sync-ack"] ?? false,
    dashboardPort: intFlag("dashboard-port", v["dashboard-port"], 8000, 0, 65535),
    dashboardHost: v["dashboard-host"] ?? "127.0.0.1",
    dashboardAllowedHosts,
    dashboard: !v["no-dashboard"],
    opsPort: v["ops-port"] === undefined
      ? undefined
      : intFlag("ops-port", v["ops-port"], 0, 0, 65535),
    opsHost: v["ops-host"] ?? "127.0.0.1",
    partialLineMs: intFlag("partial-line-ms", v["partial-line-ms"], 500, 0, 3_600_000),
    idleTimeoutMs: intFlag("idle-timeout-ms", v["idle-timeout-ms"], 300_000, 0, 86_400_000),
    maxConnections: intFlag("max-connections", v["max-connections"], 10_000, 1, 1_000_000),
    maxPendingReplies: intFlag("max-pending-replies", v["max-pending-replies"], 1024, 1, 1_000_000),
    replyBudgetMib: intFlag("reply-budget-mib", v["reply-budget-mib"], 64, 1, 65_536),
    whatsatGraceMs: intFlag("whatsat-grace-ms", v["whatsat-grace-ms"], 250, 0, 60_000),
    maxFutureS: intFlag("max-future-s", v["max-future-s"], 86_400, 0, 3_153_600_000),
    receiptWaitMs: intFlag("receipt-wait-ms", v["receipt-wait-ms"], 50, 0, 60_000),
    places,
    placesUrl: v["places-url"],
    placesTimeoutMs: intFlag("places-timeout-ms", v["places-timeout-ms"], 5000, 1, 600_000),
    placesConcurrency: intFlag("places-concurrency", v["places-concurrency"], 16, 1, 10_000),
    placesCacheTtl: intFlag("places-cache-ttl", v["places-cache-ttl"], 0, 0, 86_400 * 30),
    help: v.help ?? false,
    positionals: parsed.positionals,
  };
}
