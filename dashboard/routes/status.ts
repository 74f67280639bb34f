/** `GET /status`: version, uptime, and per server its address, records, connections and links. */

import type { RouteModule } from "../context.ts";
import { statusResponse } from "../../servers/ops/app.ts";

export const handler: RouteModule["handler"] = {
  GET(_c, d) {
    return statusResponse(d.ops);
  },
};
