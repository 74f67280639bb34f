/** `GET /metrics`: Prometheus text exposition format 0.0.4. */

import type { RouteModule } from "../context.ts";

export const handler: RouteModule["handler"] = {
  GET(c, d) {
    return c.body(d.metrics.render(d.herd.snapshot(), d.hub.stats()), 200, {
      "content-type": "text/plain; version=0.0.4; charset=utf-8",
      "cache-control": "no-store",
    });
  },
};
