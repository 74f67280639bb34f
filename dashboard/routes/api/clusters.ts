/**
 * `GET /api/clusters?z=Z&bbox=x0,y0,x1,y1`: the herd's clients grouped on a grid for zoom level Z
 * (cells 32/2^Z map units wide) inside the view box (map units of the 960×500 map; default the
 * whole map), with the exact total. 400 with a JSON error for a bad zoom or box, or a box too
 * large for its zoom level (more than 20,000 cells); 503 (`Retry-After: 1`) while cluster passes
 * have taken their share of the herd's time (client_index.ts CLUSTER_SHARE).
 */

import { CELL, ClustersBusyError, MAX_ZOOM, WORLD_BOX } from "../../client_index.ts";
import type { ClusterResult } from "../../types.ts";
import { jsonError, type RouteModule } from "../../context.ts";
import { boxParam, intParam } from "../../query.ts";

export const handler: RouteModule["handler"] = {
  GET(c, d) {
    const z = intParam("z", c.req.query("z"), 0, MAX_ZOOM, 0);
    if (!z.ok) return jsonError(c, 400, z.error);
    const box = boxParam(c.req.query("bbox"), WORLD_BOX);
    if (!box.ok) return jsonError(c, 400, box.error);
    // Nothing lies outside the map: clip the box to it (an empty clip is an empty answer).
    const [x0, y0, x1, y1] = box.value;
    const clip = [
      Math.max(x0, WORLD_BOX[0]),
      Math.max(y0, WORLD_BOX[1]),
      Math.min(x1, WORLD_BOX[2]),
      Math.min(y1, WORLD_BOX[3]),
    ] as const;
    try {
      const result: ClusterResult = clip[0] <= clip[2] && clip[1] <= clip[3]
        ? d.clients.clusters(z.value, clip)
        : {
          total: d.clients.total(),
          exact: d.clients.exact,
          inView: 0,
          z: z.value,
          cell: CELL / 2 ** z.value,
          clusters: [],
        };
      return c.json(result, 200, { "cache-control": "no-store" });
    } catch (err) {
      if (err instanceof RangeError) return jsonError(c, 400, err.message);
      if (err instanceof ClustersBusyError) {
        c.header("retry-after", "1");
        return jsonError(c, 503, err.message);
      }
      throw err;
    }
  },
};
