/** dashboard/metrics.ts: Prometheus label escaping and histograms. */

import { assertEquals } from "./_helpers/assert.ts";
import { escapeLabel, Histogram } from "../dashboard/metrics.ts";

Deno.test("metrics: label escaping and histogram buckets", () => {
  assertEquals(escapeLabel('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  const h = new Histogram([1, 2]);
  h.observe(0.5);
  h.observe(1.5);
  h.observe(5);
  assertEquals([h.counts, h.count, h.sum], [[1, 1], 3, 7]);
});
