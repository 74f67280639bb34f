/**
 * What a remote dashboard keeps of a server's `METRICS` line (its own series as prom-client JSON,
 * servers/observe.ts): the well-formed families, and in them the samples labelled with that
 * server. The dashboard's /metrics merges every server's report with prom-client's aggregator,
 * which threw on one malformed family (`[null]`, no `aggregator`), so one member's line made every
 * scrape a 500 until its next report; a name or label name outside Prometheus' syntax broke the
 * exposition for every scraper, and a sample labelled with another server's name was summed into
 * that server's series (adv15).
 *
 * @module
 */

/** Prometheus metric names (and `metricName`s of histogram samples). */
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$/;
/** Prometheus label names. */
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]{0,99}$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary"]);
/** prom-client's aggregators (metricAggregators.js). */
const AGGREGATORS = new Set(["sum", "first", "min", "max", "average", "omit"]);
/** Longest label value or help text kept (a server's are names, reasons and sentences). */
const MAX_TEXT = 1024;
/** Most families and samples a report may hold: far above what a server exports. */
const MAX_FAMILIES = 512;
const MAX_SAMPLES = 20_000;

/**
 * The families of `report` that are well-formed, holding only samples labelled
 * `server="<server>"` (a server exports only those, servers/ops/metrics.ts `exportServer`), each
 * rebuilt with its own fields; a family left with none is dropped.
 *
 * @example
 * ```ts
 * boundedMetrics([null, {
 *   name: "herd_records", help: "Records.", type: "gauge", aggregator: "sum",
 *   values: [{ value: 3, labels: { server: "Hill" } }, { value: 9, labels: { server: "Smith" } }],
 * }], "Hill"); // [{ name: "herd_records", ..., values: [{ value: 3, labels: { server: "Hill" } }] }]
 * ```
 */
export function boundedMetrics(report: unknown, server: string): unknown[] {
  if (!Array.isArray(report)) return [];
  const out: unknown[] = [];
  let samples = 0;
  for (const f of report.slice(0, MAX_FAMILIES)) {
    if (!isObject(f)) continue;
    const { name, help, type, aggregator, values } = f;
    if (
      typeof name !== "string" || !METRIC_NAME.test(name) || typeof type !== "string" ||
      !TYPES.has(type) || typeof aggregator !== "string" || !AGGREGATORS.has(aggregator) ||
      !Array.isArray(values)
    ) continue;
    const kept = [];
    for (const v of values) {
      if (samples >= MAX_SAMPLES) break;
      const sample = boundedSample(v, server);
      if (sample === undefined) continue;
      kept.push(sample);
      samples++;
    }
    if (kept.length === 0) continue;
    out.push({
      name,
      help: typeof help === "string" ? help.slice(0, MAX_TEXT) : "",
      type,
      aggregator,
      values: kept,
    });
  }
  return out;
}

/** One sample: a number, labels of valid names and text values, the server's own. */
function boundedSample(v: unknown, server: string): unknown {
  if (!isObject(v) || typeof v.value !== "number" || !isObject(v.labels)) return undefined;
  if (v.labels.server !== server) return undefined;
  const labels: Record<string, string | number> = {};
  for (const [k, l] of Object.entries(v.labels)) {
    if (!LABEL_NAME.test(k)) return undefined;
    if (typeof l === "string") labels[k] = l.slice(0, MAX_TEXT);
    else if (typeof l === "number") labels[k] = l;
    else return undefined;
  }
  const metricName = v.metricName;
  if (
    metricName !== undefined && (typeof metricName !== "string" || !METRIC_NAME.test(metricName))
  ) {
    return undefined;
  }
  return metricName === undefined
    ? { value: v.value, labels }
    : { value: v.value, labels, metricName };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
