/**
 * `GET /api/state`: the herd's snapshot as JSON (`?records=0` leaves out the records), with the
 * exact client total (`clients`, `exact`) and the sparklines' history (`series`).
 */

import type { RouteModule } from "../../context.ts";
import { displaySnapshot } from "../../display.ts";

export const handler: RouteModule["handler"] = {
  GET(c, d) {
    const withRecords = c.req.query("records") !== "0";
    return c.json(
      {
        ...displaySnapshot(d.herd.snapshot(withRecords ? undefined : 0), withRecords),
        clients: d.clients.total(),
        exact: d.clients.exact,
        series: d.series.data(),
      },
      200,
      { "cache-control": "no-store" },
    );
  },
};
