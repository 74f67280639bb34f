/** `GET /healthz`: 200 when every server listens and can write its store, else 503 and why. */

import type { RouteModule } from "../context.ts";
import { healthResponse } from "../../servers/ops/app.ts";

export const handler: RouteModule["handler"] = {
  GET(_c, d) {
    return healthResponse(d.ops);
  },
};
