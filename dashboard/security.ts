/**
 * Guards for the dashboard. Every request must name this dashboard in `Host` (the names of the
 * address it listens on, or ones the operator allowed), which stops DNS rebinding: a foreign page
 * whose name now resolves to 127.0.0.1 still sends its own name. Control endpoints (stop/start,
 * console) must also come from the dashboard's own page (Origin check, against cross-site
 * requests), and, when the dashboard listens beyond loopback, carry the dashboard token.
 *
 * The token is never put in a page. A person opens the URL printed at start (`/?token=...`); the
 * page keeps the token in sessionStorage and sends it as `Authorization: Bearer <token>`.
 *
 * @module
 */

import { randomHex } from "../servers/text.ts";
import { type HostPort, hostPort, parseHostPort, urlHost } from "../servers/http_host.ts";

/** True for loopback listen addresses (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** True for wildcard listen addresses. */
export function isWildcardHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "");
  return h === "0.0.0.0" || h === "::" || h === "";
}

/** A fresh random token (128 bits, hex). */
export function generateToken(): string {
  return randomHex(16);
}

/** Compares two strings in time independent of where they differ. */
export function timingSafeEqual(a: string, b: string): boolean {
  const ea = new TextEncoder().encode(a);
  const eb = new TextEncoder().encode(b);
  let diff = ea.length ^ eb.length;
  const n = Math.max(ea.length, eb.length);
  for (let i = 0; i < n; i++) diff |= (ea[i] ?? 0) ^ (eb[i] ?? 0);
  return diff === 0;
}

/** The policy for one dashboard. */
export interface GuardOptions {
  /** The listen address. */
  host: string;
  /** The listen port (the real one, after binding port 0). */
  port: number;
  /** Required on control requests when set. */
  token?: string;
  /** Extra origins to accept (e.g. behind a reverse proxy). */
  allowedOrigins?: string[];
  /** Extra `Host` names: `host` (any port) or `host:port` (`--dashboard-allowed-hosts`). */
  allowedHosts?: HostPort[];
}

/** Why a request was refused: HTTP status and a message for `{error}`. */
export interface Refusal {
  status: 401 | 403 | 421;
  error: string;
}

export { type HostPort, parseHostPort } from "../servers/http_host.ts";

/**
 * Parses `--dashboard-allowed-hosts` entries (empty ones skipped); throws a one-line Error naming
 * the first bad entry.
 */
export function parseAllowedHosts(entries: readonly string[]): HostPort[] {
  const out: HostPort[] = [];
  for (const raw of entries) {
    const entry = raw.trim();
    if (entry === "") continue;
    const hp = parseHostPort(entry);
    if (!hp) {
      throw new Error(
        `--dashboard-allowed-hosts: bad entry ${JSON.stringify(entry)} (want host or host:port)`,
      );
    }
    out.push(hp);
  }
  return out;
}

/** True when `hp` is one of the allowed-hosts entries (an entry without a port takes any). */
function isAllowedName(hp: HostPort, opts: GuardOptions): boolean {
  return (opts.allowedHosts ?? []).some((a) =>
    a.name === hp.name && (a.port === undefined || a.port === hp.port)
  );
}

const LOOPBACK_NAMES = ["localhost", "127.0.0.1", "[::1]"];

/**
 * Checks `Host` on any request; returns null when it names this dashboard. Accepted: the loopback
 * names (listening on loopback or on a wildcard address) or the listen address itself, with the
 * listen port (no port means 80); or an allowed-hosts entry. Anything else, a missing Host
 * included, is 421 Misdirected Request.
 */
export function checkHost(req: Request, opts: GuardOptions): Refusal | null {
  const header = req.headers.get("host");
  const hp = header === null ? null : parseHostPort(header);
  if (hp) {
    const port = hp.port ?? 80;
    const own = new Set<string>();
    if (isLoopbackHost(opts.host) || isWildcardHost(opts.host)) {
      for (const n of LOOPBACK_NAMES) own.add(n);
    }
    if (!isWildcardHost(opts.host)) own.add(urlHost(opts.host).toLowerCase());
    if ((own.has(hp.name) && port === opts.port) || isAllowedName({ ...hp, port }, opts)) {
      return null;
    }
  }
  const shown = header === null ? "missing" : JSON.stringify(header.slice(0, 100));
  return {
    status: 421,
    error: `Host ${shown} does not name this dashboard (see --dashboard-allowed-hosts)`,
  };
}

/**
 * The origins the dashboard's own page can have. Loopback: any loopback name with the port.
 * A specific address: that address. A wildcard address: the Host the request was made to (the
 * token is required then, which is what stops a rebinding attack).
 */
export function ownOrigins(opts: GuardOptions, requestHost: string | null): Set<string> {
  const set = new Set<string>(opts.allowedOrigins ?? []);
  const { host, port } = opts;
  if (isLoopbackHost(host)) {
    for (const h of ["localhost", "127.0.0.1", "[::1]"]) set.add(`http://${h}:${port}`);
    set.add(`http://${hostPort(host, port)}`);
  } else if (isWildcardHost(host)) {
    for (const h of ["localhost", "127.0.0.1", "[::1]"]) set.add(`http://${h}:${port}`);
    if (requestHost) set.add(`http://${requestHost.toLowerCase()}`);
  } else {
    set.add(`http://${hostPort(host, port)}`);
  }
  // A page served under an allowed name has that name as its origin.
  const hp = requestHost === null ? null : parseHostPort(requestHost);
  if (hp && isAllowedName({ ...hp, port: hp.port ?? 80 }, opts)) {
    set.add(`http://${requestHost!.toLowerCase()}`);
  }
  return set;
}

/** Checks a control request; returns null when allowed, else why not. */
export function checkControl(req: Request, opts: GuardOptions): Refusal | null {
  const origin = req.headers.get("origin");
  if (!origin) {
    return {
      status: 403,
      error: "missing Origin header: control requests come from the dashboard page",
    };
  }
  const allowed = ownOrigins(opts, req.headers.get("host"));
  if (!allowed.has(origin.toLowerCase())) {
    return { status: 403, error: `origin ${origin} is not this dashboard's` };
  }
  if (opts.token) {
    const auth = req.headers.get("authorization") ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(auth);
    const given = m?.[1] ?? req.headers.get("x-herd-token") ?? "";
    if (!given) return { status: 401, error: "token required (open the URL printed at start)" };
    if (!timingSafeEqual(given, opts.token)) return { status: 401, error: "bad token" };
  }
  return null;
}

/**
 * `HERD_DASHBOARD_TOKEN` when set (and readable), else undefined.
 *
 * @example
 * ```ts
 * envToken(); // undefined unless HERD_DASHBOARD_TOKEN is set
 * ```
 */
export function envToken(): string | undefined {
  try {
    return Deno.env.get("HERD_DASHBOARD_TOKEN") || undefined;
  } catch {
    return undefined; // no --allow-env
  }
}

/** The shortest control token taken from the environment (the herd secret's rule). */
export const MIN_TOKEN = 8;

/**
 * Why `token` cannot be the dashboard's control token, or undefined when it can: it travels as
 * `Authorization: Bearer <token>` and in the printed URL, so it must be printable ASCII without
 * spaces (a space split it there, and header values lose their edges' blanks), and it guards
 * control requests beyond loopback with no rate limit, so it must not be guessable in a few
 * tries: at least {@linkcode MIN_TOKEN} characters (a generated one has 32).
 *
 * @example
 * ```ts
 * tokenProblem("s3cret-token"); // undefined
 * tokenProblem("two words"); // "must be printable ASCII without spaces ..."
 * tokenProblem("a"); // "must be at least 8 characters (it has 1)"
 * ```
 */
export function tokenProblem(token: string): string | undefined {
  if (!/^[\x21-\x7e]+$/.test(token)) {
    return "must be printable ASCII without spaces (it is sent as `Authorization: Bearer <token>`)";
  }
  return token.length < MIN_TOKEN
    ? `must be at least ${MIN_TOKEN} characters (it has ${token.length})`
    : undefined;
}
