/**
 * `GET /api/client?id=ID`: one client for the client panel: its newest record, the record each
 * server holds now (read from the servers of an in-process herd; from the events seen for a
 * remote one), the propagation path of its newest record and its recent positions (both the
 * dashboard's own memory of the events: empty for a client not updated since it started).
 * 400 for a bad ID, 404 for an unknown client (JSON errors).
 */

import { clientRow } from "../../client_index.ts";
import { jsonError, type RouteModule } from "../../context.ts";
import { clientParam } from "../../query.ts";
import { compareRecords } from "../../../servers/record.ts";
import type { ClientDetail, Holding } from "../../types.ts";

export const handler: RouteModule["handler"] = {
  GET(c, d) {
    const given = clientParam("id", c.req.query("id"), false);
    if (!given.ok) return jsonError(c, 400, given.error);
    // The page names a client by its display form: found through it, then by its real bytes.
    const newest = d.clients.find(c.req.query("id")!);
    if (newest === undefined) return jsonError(c, 404, `no client ${c.req.query("id")}`);
    const id = newest.client;
    const seen = d.trails.get(id);
    const path = seen !== undefined && compareRecords(seen.newest, newest) === 0 ? seen.hops : [];
    let holdings: Holding[];
    if (typeof d.herd.holdings === "function") {
      holdings = d.herd.holdings(id).map((h) => ({
        server: h.server,
        running: h.running,
        record: h.record && clientRow(h.record),
        state: h.record === null
          ? "missing"
          : compareRecords(h.record, newest) >= 0
          ? "current"
          : "behind",
      }));
    } else {
      // A remote herd: the servers on the newest record's path hold it; of the rest we know nothing.
      const on = new Set(path.map((h) => h.server));
      holdings = d.herd.snapshot(0).servers.map((s) => ({
        server: s.name,
        running: s.running,
        record: on.has(s.name) ? clientRow(newest) : null,
        state: on.has(s.name) ? "current" : "unknown",
      }));
    }
    const body: ClientDetail = {
      newest: clientRow(newest),
      holdings,
      path,
      trail: seen?.trail ?? [],
    };
    return c.json(body, 200, { "cache-control": "no-store" });
  },
};
