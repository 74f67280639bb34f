/**
 * The dashboard's HTTP app: routes from `routes/` (see `manifest.ts`), static files, the SSE
 * hub and the metrics subscriber, all on one herd's event bus.
 *
 * ```ts
 * import type { HerdView } from "./types.ts";
 * declare const herd: HerdView; // an in-process Herd, or a RemoteHerd
 *
 * const dash = await serveDashboard(herd, { host: "127.0.0.1", port: 8080 });
 * console.log(dash.url);
 * await dash.close();
 * ```
 *
 * @module
 */

import { Hono, type MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { compress } from "hono/compress";
import { etag } from "hono/etag";
import { type Assets, loadAssets, serveStatic, STATIC_DIR } from "./assets.ts";
import type { Dashboard } from "./context.ts";
import { DEFAULT_STALL_MS, EventHub, type HubOptions } from "./hub.ts";
import { serveHttp } from "../servers/http_front.ts";
import { routePattern, ROUTES } from "./manifest.ts";
import { HerdMetrics } from "../servers/ops/metrics.ts";
import { headAsGet, jsonErrors, type Ops, wrongMethod } from "../servers/ops/app.ts";
import { VERSION } from "../servers/version.ts";
import { registerHubMetrics } from "./hub_metrics.ts";
import { type MetricsReports, RemoteMetrics } from "./remote_metrics.ts";
import { ClientIndex } from "./client_index.ts";
import { ClientTrails } from "./trails.ts";
import { ServerSeries } from "./series.ts";
import {
  checkControl,
  checkHost,
  envToken,
  generateToken,
  type GuardOptions,
  isLoopbackHost,
  isWildcardHost,
  parseAllowedHosts,
} from "./security.ts";
import type { HerdView } from "./types.ts";
import { hostPort } from "../servers/http_host.ts";

/** How a dashboard is set up. */
export interface DashboardOptions {
  /** Listen address (and the origin the control checks expect). */
  host: string;
  /** Listen port; 0 picks a free one (serveDashboard reports the real one). */
  port: number;
  /**
   * Control token. Default: none on loopback; beyond loopback, `HERD_DASHBOARD_TOKEN` when the
   * caller passes it here, else a generated one (serveDashboard prints where to use it).
   */
  token?: string;
  /** Extra origins accepted on control requests (behind a proxy). */
  allowedOrigins?: string[];
  /**
   * Extra names accepted in `Host` besides the listen address's own: `host` (any port) or
   * `host:port` (`--dashboard-allowed-hosts`). A wildcard listen needs them for any name but the
   * loopback ones.
   */
  allowedHosts?: string[];
  /** SSE hub tuning (tests shorten the heartbeat). */
  hub?: HubOptions;
  /** Bound on a console command's reply. Default 10 s. */
  commandTimeoutMs?: number;
  /** Where static files are. Default: this repository's static/. */
  staticDir?: URL;
  /** Built assets (default: read from staticDir). */
  assets?: Assets;
  /**
   * The process's ops state (its one metrics registry), when the process made one; else the
   * dashboard makes its own.
   */
  ops?: Ops;
}

/** A dashboard app, not yet listening. */
export interface DashboardApp {
  app: Hono;
  /** The control token in force (undefined when none is required). */
  token: string | undefined;
  /** The shared state the routes use. */
  dashboard: Dashboard;
  /** Tells the control checks where the dashboard really listens (after binding port 0). */
  setListenAddress(host: string, port: number): void;
  /** Ends every event stream and leaves the bus. */
  close(): void;
}

/** The token a dashboard on `host` needs: the given one, none on loopback, else a fresh one. */
export function resolveToken(host: string, token?: string): string | undefined {
  if (token) return token;
  return isLoopbackHost(host) ? undefined : generateToken();
}

/** Builds the dashboard app for a herd (assets are read synchronously-once via `opts.assets`). */
export function createDashboard(
  herd: HerdView,
  opts: DashboardOptions & { assets: Assets },
): DashboardApp;
export function createDashboard(herd: HerdView, opts: DashboardOptions): DashboardApp;
export function createDashboard(herd: HerdView, opts: DashboardOptions): DashboardApp {
  const token = resolveToken(opts.host, opts.token);
  const guard: GuardOptions = {
    host: opts.host,
    port: opts.port,
    token,
    allowedOrigins: opts.allowedOrigins,
    allowedHosts: parseAllowedHosts(opts.allowedHosts ?? []),
  };
  const staticDir = opts.staticDir ?? STATIC_DIR;
  const hub = new EventHub(herd.bus, opts.hub);
  const ops: Ops = opts.ops ?? {
    source: herd,
    // Watching server processes: their own counters; else counted here from the bus.
    metrics: "metricsJson" in herd
      ? new RemoteMetrics(herd as HerdView & MetricsReports, VERSION)
      : new HerdMetrics(herd, { version: VERSION }),
    version: VERSION,
    startedAt: Date.now(),
    startedMono: performance.now(),
  };
  const metrics = ops.metrics;
  registerHubMetrics(metrics, hub);
  const clients = new ClientIndex(herd);
  const trails = new ClientTrails(herd.bus);
  const series = new ServerSeries(herd);
  series.onTick((tick) => hub.notice("series", tick));
  const dashboard: Dashboard = {
    herd,
    hub,
    metrics,
    clients,
    trails,
    series,
    ops,
    guard,
    assets: opts.assets ?? { built: false, islands: {}, chunks: [], styleUrl: "/static/style.css" },
    commandTimeoutMs: opts.commandTimeoutMs ?? 10_000,
  };
  let assetsLoaded = opts.assets !== undefined;

  const app = new Hono();

  jsonErrors(app, "dashboard");

  // A control body is a command line (64 KiB, each byte up to 6 in JSON) or a few fields: a
  // declared larger one gets 413 before it is read, a chunked one once it passes the bound (they
  // used to be read and JSON-parsed whole: 150 MiB took 570 MB and stalled the herd's thread).
  const limitBody = bodyLimit({
    maxSize: MAX_CONTROL_BODY,
    onError: (c) => c.json({ error: `request body over ${MAX_CONTROL_BODY} bytes` }, 413),
  });

  // Every request must name this dashboard in Host (DNS rebinding); every request that changes
  // something is a control request: same origin, and the token.
  app.use("*", async (c, next) => {
    const misdirected = checkHost(c.req.raw, guard);
    if (misdirected) return c.json({ error: misdirected.error }, misdirected.status);
    const control = c.req.method !== "GET" && c.req.method !== "HEAD" &&
      c.req.method !== "OPTIONS";
    if (control) {
      const refusal = checkControl(c.req.raw, guard);
      if (refusal) return c.json({ error: refusal.error }, refusal.status);
    }
    if (!assetsLoaded) {
      dashboard.assets = await loadAssets(staticDir);
      assetsLoaded = true;
    }
    if (control) return await limitBody(c, next);
    await next();
  });

  app.use("*", cacheable());

  app.get("/static/*", (c) => serveStatic(c, staticDir));
  wrongMethod(app, "/static/*", ["GET"]);

  for (const [file, mod] of Object.entries(ROUTES)) {
    const pattern = routePattern(file);
    const methods: string[] = [];
    for (const [method, fn] of Object.entries(mod.handler)) {
      if (fn) {
        app.on(method, pattern, (c) => fn(c, dashboard));
        methods.push(method);
      }
    }
    wrongMethod(app, pattern, methods);
  }

  return {
    app,
    token,
    dashboard,
    setListenAddress(host, port) {
      guard.host = host;
      guard.port = port;
    },
    close() {
      hub.close();
      // A process's own metrics outlive its dashboard.
      if (opts.ops === undefined) metrics.close();
      clients.close();
      trails.close();
      series.close();
    },
  };
}

/** Bytes a control request's body may have (see the middleware in {@linkcode createDashboard}). */
export const MAX_CONTROL_BODY = 512 * 1024;

/** Where the event stream is served: never hashed, never compressed. */
const EVENTS_PATH = "/api/events";

/**
 * gzip (or deflate) and an ETag (304 on `If-None-Match`) for the page, static files and JSON.
 * The event stream is left alone: an ETag would read the endless body to hash it, and a
 * compressor would hold events back until its buffer fills (its content type is never
 * compressed either).
 */
function cacheable(): MiddlewareHandler {
  const zip = compress();
  const tag = etag();
  return async (c, next) => {
    if (c.req.path === EVENTS_PATH) return await next();
    await zip(c, async () => void await tag(c, next));
  };
}

/** A listening dashboard. */
export interface ServedDashboard extends DashboardApp {
  /** `http://host:port` (a loopback name when listening on a wildcard address). */
  url: string;
  /** The URL to open: with `?token=` when a token is required. */
  openUrl: string;
  /** Stops the event streams and the HTTP server. */
  close(): Promise<void>;
  /** Resolves when the HTTP server has stopped. */
  finished: Promise<void>;
}

/**
 * Serves the dashboard (servers/http_front.ts `serveHttp`). The token is `opts.token`, else `HERD_DASHBOARD_TOKEN`,
 * else (beyond loopback only) a generated one. When a token is in force it prints the URL that
 * carries it (to stderr, unless `quiet`): the token is never sent in a page.
 */
export async function serveDashboard(
  herd: HerdView,
  opts: DashboardOptions & { quiet?: boolean; signal?: AbortSignal },
): Promise<ServedDashboard> {
  const assets = opts.assets ?? await loadAssets(opts.staticDir ?? STATIC_DIR);
  const dash = createDashboard(herd, { ...opts, token: opts.token ?? envToken(), assets });
  // Behind the one guarded front of every HTTP port (servers/http_front.ts). Should its HTTP
  // server fail anyway, it listens again; the herd keeps running.
  const served = serveHttp(headAsGet(dash.app), {
    hostname: opts.host,
    port: opts.port,
    stallMs: opts.hub?.stallMs ?? DEFAULT_STALL_MS,
    label: "dashboard",
  });
  const stop = () => served.close();
  opts.signal?.addEventListener("abort", () => void stop(), { once: true });
  const addr = served.addr;
  dash.setListenAddress(opts.host, addr.port);
  const shownHost = isWildcardHost(opts.host) ? "127.0.0.1" : opts.host;
  const url = `http://${hostPort(shownHost, addr.port)}`;
  // Encoded: a token may hold `#`, `&`, `+`, `%`, spaces or control bytes.
  const openUrl = dash.token ? `${url}/?token=${encodeURIComponent(dash.token)}` : `${url}/`;
  if (!opts.quiet) {
    console.error(`dashboard: ${openUrl}`);
    if (dash.token) {
      console.error(
        `dashboard: listening beyond loopback on ${opts.host}: control requests need the token above`,
      );
    }
  }
  let closed = false;
  return {
    ...dash,
    url,
    openUrl,
    finished: served.finished,
    async close() {
      if (closed) return served.finished;
      closed = true;
      dash.close();
      await stop();
    },
  };
}
