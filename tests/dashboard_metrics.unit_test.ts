/** dashboard/metrics.ts: Prometheus label escaping and histograms. */

import assert from "node:assert/strict";
import { escapeLabel, Histogram } from "../dashboard/metrics.ts";

Deno.test("metrics: label escaping and histogram buckets", () => {
  assert.deepEqual(escapeLabel('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  const h = new Histogram([1, 2]);
  h.observe(0.5);
  h.observe(1.5);
  h.observe(5);
  assert.deepEqual([h.counts, h.count, h.sum], [[1, 1], 3, 7]);
});
