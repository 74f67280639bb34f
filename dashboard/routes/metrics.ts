/** `GET /metrics`: the process's Prometheus metrics (`servers/ops/`), with the dashboard's own. */

import type { RouteModule } from "../context.ts";
import { metricsResponse } from "../../servers/ops/app.ts";

export const handler: RouteModule["handler"] = {
  GET(_c, d) {
    return metricsResponse(d.ops);
  },
};
