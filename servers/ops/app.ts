/**
 * The ops endpoint of a process that runs herd servers: `GET /metrics` (Prometheus text),
 * `GET /healthz` (200, or 503 with the reasons) and `GET /status` (JSON: version, uptime, and per
 * server its address, records, connections and links). A small Hono app on Web-standard
 * Request/Response: `server --ops-port N` serves it alone; `start` mounts the same routes on its
 * dashboard port. Nothing here knows the dashboard.
 *
 * @module
 */

import { Hono } from "hono";
import type { HerdSnapshot } from "../snapshot.ts";
import { type ServedHttp, serveHttp } from "../http_front.ts";
import { hostPort, isIpName, parseHostPort, urlHost } from "../http_host.ts";
import { errText, oneLine } from "../text.ts";
import type { LinkState } from "../events.ts";
import { localSnapshot, type MetricsExposition, type MetricsSource } from "./metrics.ts";

/** One server's health as the process sees it. */
export interface ServerHealth {
  server: string;
  /** Its listener is open. */
  listening: boolean;
  /** Its durable store takes writes (true without one); undefined when unknown (remote). */
  writable?: boolean;
}

/** What the ops routes read (without `health`, health comes from the snapshot's `running`). */
export type OpsSource = MetricsSource;

/** What `/status` answers. */
export interface OpsStatus {
  version: string;
  /** Seconds since the process started serving. */
  uptimeSeconds: number;
  startedAt: string;
  places: string;
  servers: {
    name: string;
    address: string;
    running: boolean;
    records: number;
    connections: number;
    links: {
      peer: string;
      state: LinkState;
      rttMs: number | null;
      behind: number | null;
      unacked: number | null;
      /** ISO time of the last state change, or null when unknown. */
      lastChange: string | null;
    }[];
  }[];
}

/** What `/healthz` answers. */
export interface OpsHealth {
  status: "ok" | "unhealthy";
  /** Why not, one line per problem (empty when ok). */
  reasons: string[];
  servers: ServerHealth[];
}

/** The ops state of one process: its source, metrics, version and start time. */
export interface Ops {
  source: OpsSource;
  metrics: MetricsExposition;
  version: string;
  /** `Date.now()` when the process started. */
  startedAt: number;
  /**
   * `performance.now()` at the same moment: the uptime is counted from it, so a wall-clock step
   * neither makes it negative nor adds the step to it. Without it, from `startedAt`.
   */
  startedMono?: number;
  /**
   * Exceptions nothing caught that the process's last resort said and survived
   * (cli/last_resort.ts): any makes it unhealthy, so a monitor restarts a process a bug left in
   * an unknown state instead of it serving on unseen.
   */
  uncaught?: () => number;
}

/**
 * The status JSON.
 *
 * @example
 * ```ts
 * declare const ops: Ops;
 * opsStatus(ops).servers[0].links[0].rttMs; // 0.21
 * ```
 */
export function opsStatus(ops: Ops): OpsStatus {
  const snap: HerdSnapshot = localSnapshot(ops.source);
  return {
    version: ops.version,
    uptimeSeconds: Math.round(
      (ops.startedMono === undefined
        ? Date.now() - ops.startedAt
        : performance.now() - ops.startedMono) / 100,
    ) / 10,
    startedAt: new Date(ops.startedAt).toISOString(),
    places: snap.places,
    servers: snap.servers.map((s) => ({
      name: s.name,
      address: hostPort(s.host, s.port),
      running: s.running,
      records: s.records,
      connections: s.connections,
      links: s.links.map((l) => ({
        peer: l.peer,
        state: l.state ?? (l.up ? "up" : "down"),
        rttMs: l.rttMs === null || l.rttMs === undefined ? null : Math.round(l.rttMs * 1000) / 1000,
        behind: l.behind ?? null,
        unacked: l.unacked ?? null,
        lastChange: l.since ? new Date(l.since).toISOString() : null,
      })),
    })),
  };
}

/**
 * The health verdict: every server listening and its store writable, and no uncaught error.
 *
 * @example
 * ```ts
 * declare const ops: Ops;
 * opsHealth(ops).status; // "ok"
 * ```
 */
export function opsHealth(ops: Ops): OpsHealth {
  const servers: ServerHealth[] = ops.source.health?.() ??
    ops.source.snapshot(0).servers.map((s) => ({ server: s.name, listening: s.running }));
  const reasons: string[] = [];
  for (const s of servers) {
    if (!s.listening) reasons.push(`${s.server} is not listening`);
    if (s.writable === false) reasons.push(`${s.server} cannot write its store`);
  }
  if (servers.length === 0) reasons.push("no servers");
  const uncaught = ops.uncaught?.() ?? 0;
  if (uncaught > 0) {
    reasons.push(
      `${uncaught} uncaught error(s) survived at the last resort (stderr says which): a bug ` +
        `may have left this process degraded`,
    );
  }
  return { status: reasons.length === 0 ? "ok" : "unhealthy", reasons, servers };
}

/** Headers every ops answer carries: nothing here may be cached. */
const NO_STORE = { "cache-control": "no-store" };

/** `GET /metrics`. */
export async function metricsResponse(ops: Ops): Promise<Response> {
  return new Response(await ops.metrics.render(), {
    headers: { "content-type": ops.metrics.contentType, ...NO_STORE },
  });
}

/** `GET /healthz`. */
export function healthResponse(ops: Ops): Response {
  const health = opsHealth(ops);
  return Response.json(health, { status: health.status === "ok" ? 200 : 503, headers: NO_STORE });
}

/** `GET /status`. */
export function statusResponse(ops: Ops): Response {
  return Response.json(opsStatus(ops), { headers: NO_STORE });
}

/**
 * True when a request's `Host` (host[:port] or [v6][:port], parsed as the dashboard parses it)
 * names an IP address, `localhost`, or the name it listens on; any port. A web page that rebinds its own DNS name to this machine sends that name,
 * so it cannot read /status (the dashboard checks Host the same way, more finely).
 *
 * @example
 * ```ts
 * opsHostAllowed("127.0.0.1:9100", "127.0.0.1"); // true
 * opsHostAllowed("evil.example:9100", "127.0.0.1"); // false
 * ```
 */
export function opsHostAllowed(host: string | undefined, listenHost: string): boolean {
  const hp = host === undefined ? null : parseHostPort(host);
  if (hp === null) return false;
  const listen = parseHostPort(urlHost(listenHost));
  return isIpName(hp.name) || hp.name === "localhost" || hp.name === listen?.name;
}

/**
 * Every error of a Hono app as JSON: a thrown handler is a 500 `internal error` (the detail goes
 * to stderr under `label`, never to the client), an unknown route a 404 naming it.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * jsonErrors(new Hono(), "ops");
 * ```
 */
export function jsonErrors(app: Hono, label: string): void {
  app.onError((err, c) => {
    // One line: the path is the client's (percent-escapes decoded), the message may quote it.
    console.error(
      oneLine(`${label}: ${c.req.method} ${c.req.path}: ${errText(err, true)}`.slice(0, 1000)),
    );
    return c.json({ error: "internal error" }, 500);
  });
  app.notFound((c) => c.json({ error: `no route for ${c.req.method} ${c.req.path}` }, 404));
}

/**
 * After a route's own methods: OPTIONS answers 204 with `Allow`, any other method a JSON 405 with
 * `Allow` (a GET route also takes HEAD: see {@linkcode headAsGet}). Shared by the ops endpoint and
 * the dashboard, so both answer methods alike.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * const app = new Hono();
 * app.get("/healthz", (c) => c.json({ status: "ok" }));
 * wrongMethod(app, "/healthz", ["GET"]); // PUT → 405, Allow: GET, HEAD, OPTIONS
 * ```
 */
export function wrongMethod(app: Hono, pattern: string, methods: readonly string[]): void {
  const allow = [...methods, ...(methods.includes("GET") ? ["HEAD"] : []), "OPTIONS"].join(", ");
  app.all(pattern, (c) => {
    c.header("allow", allow);
    if (c.req.method === "OPTIONS") return c.body(null, 204);
    return c.json({ error: `${c.req.method} is not allowed here (allowed: ${allow})` }, 405);
  });
}

/**
 * A Hono app's handler for `Deno.serve` that answers HEAD with the GET's whole response, body
 * included: `Deno.serve` sends its head alone, with the length of a body of known size and none
 * for a stream (which it cancels), so HEAD's headers are the GET's. (Hono's own HEAD answers a
 * null body, which `Deno.serve` sends as `content-length: 0` whatever the GET's length, even for
 * an endless event stream.)
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * Deno.serve({ port: 0 }, headAsGet(new Hono()));
 * ```
 */
export function headAsGet(app: Hono): (req: Request, info: unknown) => Promise<Response> {
  // URL and headers only: copying the request would read its `signal`, which makes Deno.serve
  // warn (legacy abort) on every HEAD; nothing here listens to it.
  return async (req, info) =>
    await app.fetch(
      req.method === "HEAD" ? new Request(req.url, { headers: req.headers }) : req,
      info,
    );
}

/**
 * The ops app alone (`server --ops-port`, `start --no-dashboard --ops-port`).
 *
 * @example
 * ```ts
 * declare const ops: Ops;
 * const res = await createOpsApp(ops).request("/healthz", { headers: { host: "127.0.0.1" } });
 * res.status; // 200
 * ```
 */
export function createOpsApp(ops: Ops, listenHost = "127.0.0.1"): Hono {
  const app = new Hono();
  jsonErrors(app, "ops");
  app.use("*", async (c, next) => {
    if (!opsHostAllowed(c.req.header("host"), listenHost)) {
      return c.json({ error: "Host does not name this endpoint" }, 421);
    }
    await next();
  });
  app.get("/metrics", () => metricsResponse(ops));
  app.get("/healthz", () => healthResponse(ops));
  app.get("/status", () => statusResponse(ops));
  for (const path of ["/metrics", "/healthz", "/status"]) wrongMethod(app, path, ["GET"]);
  return app;
}

/** A listening ops endpoint. */
export interface ServedOps {
  /** `http://host:port`. */
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Serves the ops app behind the guarded front every HTTP port of ours uses
 * (servers/http_front.ts: descriptor budget, accept back-off, idle and stalled connections
 * closed); a clear error when the port is taken.
 *
 * @example
 * ```ts
 * declare const ops: Ops;
 * const served = serveOps(ops, "127.0.0.1", 9100);
 * await served.close();
 * ```
 */
export function serveOps(ops: Ops, host: string, port: number): ServedOps {
  const app = createOpsApp(ops, host);
  let served: ServedHttp;
  try {
    served = serveHttp(headAsGet(app), { hostname: host, port, label: "ops" });
  } catch (err) {
    if (err instanceof Deno.errors.AddrInUse) {
      throw new Error(`ops: port ${port} on ${host} is already in use`);
    }
    throw new Error(`ops: cannot listen on ${hostPort(host, port)}: ${(err as Error).message}`);
  }
  const real = served.addr.port;
  return {
    url: `http://${urlHost(host)}:${real}`,
    port: real,
    close: () => served.close(),
  };
}
