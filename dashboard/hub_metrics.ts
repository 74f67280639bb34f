/**
 * The dashboard's own series (its SSE hub), added to the process's metrics registry.
 *
 * @module
 */

import type { EventHub } from "./hub.ts";
import { collectedMetric, type MetricsExposition } from "../servers/ops/metrics.ts";

/**
 * Registers the hub's gauges and counters on `metrics`' registry (replacing those of an earlier
 * hub) when it is made: prom-client loads at the first scrape, not with the dashboard.
 *
 * @example
 * ```ts
 * import type { HerdMetrics } from "../servers/ops/metrics.ts";
 * import type { EventHub } from "./hub.ts";
 * declare const metrics: HerdMetrics;
 * declare const hub: EventHub;
 * registerHubMetrics(metrics, hub);
 * ```
 */
export function registerHubMetrics(metrics: MetricsExposition, hub: EventHub): void {
  const series: [
    string,
    string,
    "gauge" | "counter",
    (s: ReturnType<EventHub["stats"]>) => number,
  ][] = [
    ["herd_dashboard_subscribers", "Open dashboard event streams.", "gauge", (s) => s.subscribers],
    [
      "herd_dashboard_events_total",
      "Events taken into the dashboard's ring.",
      "counter",
      (s) => s.eventsIn,
    ],
    ["herd_dashboard_frames_total", "Event-stream frames written.", "counter", (s) => s.frames],
    [
      "herd_dashboard_merged_total",
      "Events folded into another in a busy tick's event-stream frame.",
      "counter",
      (s) => s.merged,
    ],
    [
      "herd_dashboard_gaps_total",
      "Gap notices sent to subscribers that fell behind.",
      "counter",
      (s) => s.gaps,
    ],
    ["herd_dashboard_cut_total", "Subscribers cut loose for not reading.", "counter", (s) => s.cut],
    [
      "herd_dashboard_streams_refused_total",
      "Event streams refused because the stream cap was reached.",
      "counter",
      (s) => s.refused,
    ],
  ];
  metrics.extend((registry, client) => {
    for (const [name, help, type, value] of series) {
      registry.removeSingleMetric(name);
      collectedMetric(client, type, name, help, [registry], () => value(hub.stats()));
    }
  });
}
