/**
 * Guards for the dashboard's control endpoints (stop/start, console): the request must come from
 * the dashboard's own page (Origin check, against cross-site requests and DNS rebinding), and,
 * when the dashboard listens beyond loopback, carry the dashboard token.
 *
 * The token is never put in a page. A person opens the URL printed at start (`/?token=...`); the
 * page keeps the token in sessionStorage and sends it as `Authorization: Bearer <token>`.
 *
 * @module
 */

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

/** The URL authority for a host and port (`[::1]:8080` for IPv6). */
export function authority(host: string, port: number): string {
  const h = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  return `${h}:${port}`;
}

/** A fresh random token (128 bits, hex). */
export function generateToken(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
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
}

/** Why a request was refused: HTTP status and a message for `{error}`. */
export interface Refusal {
  status: 401 | 403;
  error: string;
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
    set.add(`http://${authority(host, port)}`);
  } else if (isWildcardHost(host)) {
    for (const h of ["localhost", "127.0.0.1", "[::1]"]) set.add(`http://${h}:${port}`);
    if (requestHost) set.add(`http://${requestHost.toLowerCase()}`);
  } else {
    set.add(`http://${authority(host, port)}`);
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
