/**
 * `POST /api/links/:a/:b` with `{"cut": true}`, `{"cut": false}` and/or `{"delayMs": N}`: cuts,
 * restores or delays the link between two servers of an in-process herd (both ends that run
 * here; servers/link_control.ts). 400 for a bad body, 404 for a pair that is not a link, 409 for
 * a remote herd (its servers take no control from a dashboard). Control request: Origin and
 * token are checked before this runs (dashboard/app.ts).
 */

import { jsonError, type RouteModule } from "../../../../context.ts";
import { parseLinkChange } from "../../../../../servers/link_control.ts";
import { NoSuchLinkError } from "../../../../../servers/herd.ts";

export const handler: RouteModule["handler"] = {
  async POST(c, d) {
    const a = c.req.param("a") ?? "";
    const b = c.req.param("b") ?? "";
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return jsonError(c, 400, 'body must be JSON: {"cut": true|false} and/or {"delayMs": N}');
    }
    const parsed = parseLinkChange(body);
    if ("error" in parsed) return jsonError(c, 400, parsed.error);
    if (typeof d.herd.setLink !== "function") {
      return jsonError(
        c,
        409,
        `cannot change ${a}–${b} from here: the herd is remote (its servers take no link ` +
          "control from a dashboard; cut links where the servers run)",
      );
    }
    try {
      const ends = d.herd.setLink(a, b, parsed.change);
      return c.json({ ok: true, link: [a, b], ends });
    } catch (err) {
      if (err instanceof NoSuchLinkError) return jsonError(c, 404, err.message);
      throw err;
    }
  },
};
