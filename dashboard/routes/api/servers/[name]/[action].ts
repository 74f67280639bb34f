/**
 * `POST /api/servers/:name/stop` and `/start`: stop or start one server of an in-process herd.
 * 404 for an unknown server or action, 409 when not possible (remote herd, already in that
 * state). Control request: Origin and token are checked before this runs (web/app.ts).
 */

import { jsonError, type RouteModule } from "../../../../context.ts";
import { displaySnapshot } from "../../../../display.ts";
import { errText } from "../../../../../servers/text.ts";

export const handler: RouteModule["handler"] = {
  async POST(c, d) {
    const name = c.req.param("name") ?? "";
    const action = c.req.param("action");
    if (action !== "stop" && action !== "start") return jsonError(c, 404, `no action ${action}`);
    const s = d.herd.snapshot().servers.find((x) => x.name === name);
    if (!s) return jsonError(c, 404, `no server named ${name}`);
    const fn = action === "stop" ? d.herd.stopServer : d.herd.startServer;
    if (typeof fn !== "function") {
      return jsonError(
        c,
        409,
        `cannot ${action} ${name} from here: the herd is remote (${action} it where it runs)`,
      );
    }
    if (action === "stop" && !s.running) return jsonError(c, 409, `${name} is already stopped`);
    if (action === "start" && s.running) return jsonError(c, 409, `${name} is already running`);
    try {
      await fn.call(d.herd, name);
    } catch (err) {
      return jsonError(
        c,
        500,
        `${action} ${name} failed: ${errText(err)}`,
      );
    }
    const now = displaySnapshot(d.herd.snapshot(), false).servers.find((x) => x.name === name);
    return c.json({ ok: true, server: now });
  },
};
