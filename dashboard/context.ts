/**
 * What every route handler gets: the herd, the hub, the metrics, the security policy and the
 * built assets of one dashboard. Route files (`routes/`) export a `handler` object keyed by HTTP
 * method, Fresh style; `manifest.ts` maps them to paths.
 *
 * @module
 */

import type { Context } from "hono";
import type { EventHub } from "./hub.ts";
import type { MetricsExposition } from "../servers/ops/metrics.ts";
import type { Ops } from "../servers/ops/app.ts";
import type { GuardOptions } from "./security.ts";
import type { HerdView } from "./types.ts";
import type { Assets } from "./assets.ts";
import type { ClientIndex } from "./client_index.ts";
import type { ClientTrails } from "./trails.ts";
import type { ServerSeries } from "./series.ts";

/** One dashboard's shared state. */
export interface Dashboard {
  herd: HerdView;
  hub: EventHub;
  metrics: MetricsExposition;
  /** The process's ops state: /metrics, /healthz and /status are served from it. */
  ops: Ops;
  /** Every client's newest record and map position (totals, clusters, search). */
  clients: ClientIndex;
  /** Recent clients' trails and propagation paths. */
  trails: ClientTrails;
  /** Per-server sparkline data. */
  series: ServerSeries;
  /** The control-request policy (its port is the real one once listening). */
  guard: GuardOptions;
  assets: Assets;
  /** Bound on one console command's reply. */
  commandTimeoutMs: number;
}

/** A route handler: Hono's context plus the dashboard. */
export type RouteHandler = (c: Context, d: Dashboard) => Response | Promise<Response>;

/** What a route file exports. */
export interface RouteModule {
  handler: Partial<Record<"GET" | "POST", RouteHandler>>;
}

/** A JSON error body with a status: `{"error": "..."}`. */
export function jsonError(
  c: Context,
  status: 400 | 401 | 403 | 404 | 409 | 413 | 500 | 502 | 503,
  error: string,
): Response {
  return c.json({ error }, status);
}
