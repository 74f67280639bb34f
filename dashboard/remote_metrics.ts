/**
 * /metrics for a dashboard watching separate server processes: each server's own series, as it
 * last reported them on its observer stream (`METRICS` lines, see servers/observe.ts), merged
 * with the dashboard's own (its hub, its build). Counting events here instead would start from
 * zero when the dashboard starts and miss whatever happens while a stream is down.
 *
 * @module
 */

import type client from "prom-client";
import {
  buildInfo,
  LazyRegistry,
  loadPromClient,
  type MetricsExposition,
  PROMETHEUS_CONTENT_TYPE,
  type RegistryExtension,
} from "../servers/ops/metrics.ts";

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
  readonly #registry: LazyRegistry;
  readonly #reports: MetricsReports;

  constructor(reports: MetricsReports, version: string) {
    this.#reports = reports;
    this.#registry = new LazyRegistry((registry, client) => buildInfo(client, [registry], version));
  }

  registry(): Promise<client.Registry> {
    return this.#registry.get();
  }

  extend(add: RegistryExtension): void {
    this.#registry.extend(add);
  }

  get contentType(): string {
    return PROMETHEUS_CONTENT_TYPE;
  }

  async render(): Promise<string> {
    const registry = await this.#registry.get();
    const client = await loadPromClient();
    // Each server's samples carry its `server` label, so aggregating is a union. A family this
    // dashboard has itself (herd_build_info, its hub's) stays its own: merging two registries
    // that both hold a name throws, and a server's report made every scrape a 500 so (adv15).
    const own = (name: unknown) => registry.getSingleMetric(String(name)) !== undefined;
    const reports = this.#reports.metricsJson().map((families) =>
      families.filter((f) => !own((f as { name?: unknown }).name))
    );
    const servers = client.AggregatorRegistry.aggregate(
      reports as Parameters<typeof client.AggregatorRegistry.aggregate>[0],
    );
    return await client.Registry.merge([servers as client.Registry, registry]).metrics();
  }

  close(): void {}
}
