/**
 * `GET /api/world`: the world map's geography, Natural Earth 1:110m countries as TopoJSON from
 * the `world-atlas` package (public domain). Served from this process: no tile server, no network.
 */

import world from "world-atlas/countries-110m.json" with { type: "json" };
import type { RouteModule } from "../../context.ts";

let body: string | undefined;

export const handler: RouteModule["handler"] = {
  GET(c) {
    body ??= JSON.stringify(world);
    return c.body(body, 200, {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "public, max-age=86400",
    });
  },
};
