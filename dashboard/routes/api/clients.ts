/**
 * `GET /api/clients?prefix=P&limit=N`: clients whose ID starts with P, the first N (default 20,
 * at most 100) in ID order, and how many match in all. An empty prefix lists from the first ID.
 * 400 with a JSON error for a bad prefix (over 256 bytes, whitespace, control characters) or limit.
 */

import { clientRow, MAX_SEARCH } from "../../client_index.ts";
import { jsonError, type RouteModule } from "../../context.ts";
import { clientParam, intParam } from "../../query.ts";
import type { SearchResult } from "../../types.ts";

export const handler: RouteModule["handler"] = {
  GET(c, d) {
    const prefix = clientParam("prefix", c.req.query("prefix"), true);
    if (!prefix.ok) return jsonError(c, 400, prefix.error);
    const limit = intParam("limit", c.req.query("limit"), 1, MAX_SEARCH, 20);
    if (!limit.ok) return jsonError(c, 400, limit.error);
    const found = d.clients.search(prefix.value, limit.value);
    const body: SearchResult = {
      prefix: c.req.query("prefix") ?? "",
      total: found.total,
      clients: found.records.map((r) => {
        const { diff: _diff, ...row } = clientRow(r);
        return row;
      }),
    };
    return c.json(body, 200, { "cache-control": "no-store" });
  },
};
