/**
 * /metrics for a dashboard watching separate server processes: each server's own series, as it
 * last reported them on its observer stream (`METRICS` lines, see servers/observe.ts), merged
 * with the dashboard's own (its hub, its build). Counting events here instead would start from
 * zero when the dashboard starts and miss whatever happens while a stream is down.
 *
 * @module
 */

import client from "prom-client";
import type { MetricsExposition } from "../servers/ops/metrics.ts";

/** Where the servers' reports come from (a `RemoteHerd`). */
export interface MetricsReports {
  metricsJson(): unknown[][];
}

/**
 * The merged exposition.
 *
 * @example
 * ```ts
 * import type { RemoteHerd } from "./remote_herd.ts";
 * import { VERSION } from "../servers/version.ts";
 * declare const remoteHerd: RemoteHerd;
 * const metrics = new RemoteMetrics(remoteHerd, VERSION);
 * await metrics.render();
 * ```
 */
export class RemoteMetrics implements MetricsExposition {
  readonly registry: client.Registry = new client.Registry();
  readonly #reports: MetricsReports;

  constructor(reports: MetricsReports, version: string) {
    this.#reports = reports;
    new client.Gauge({
      name: "herd_build_info",
      help: "The herd's version (always 1).",
      labelNames: ["version"],
      registers: [this.registry],
    }).set({ version }, 1);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  async render(): Promise<string> {
    // Each server's samples carry its `server` label, so aggregating is a union.
    const servers = client.AggregatorRegistry.aggregate(
      this.#reports.metricsJson() as Parameters<typeof client.AggregatorRegistry.aggregate>[0],
    );
    return await client.Registry.merge([servers as client.Registry, this.registry]).metrics();
  }

  close(): void {}
}
