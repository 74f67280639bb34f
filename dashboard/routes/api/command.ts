/**
 * `POST /api/command` `{server, line}` → `{server, line, reply, bytes, ms, error?}`: sends one
 * protocol command to that server over real TCP, as a client would, and returns the raw reply.
 * Control request: Origin and token are checked before this runs (web/app.ts).
 */

import { sendCommand } from "../../command.ts";
import { jsonError, type RouteModule } from "../../context.ts";
import { isBlankLine } from "../../../servers/protocol.ts";

/** Longest command accepted (the herd's own line limit is 64 KiB). */
const MAX_LINE = 64 * 1024;

export const handler: RouteModule["handler"] = {
  async POST(c, d) {
    let body: { server?: unknown; line?: unknown };
    try {
      body = await c.req.json();
    } catch {
      return jsonError(c, 400, 'body must be JSON: {"server": ..., "line": ...}');
    }
    const { server, line } = body ?? {};
    if (typeof server !== "string" || typeof line !== "string") {
      return jsonError(c, 400, "server and line must be strings");
    }
    if (/[\r\n]/.test(line.replace(/[\r\n]+$/, ""))) return jsonError(c, 400, "one line only");
    const cmd = line.replace(/[\r\n]+$/, "");
    // Blank by the protocol's whitespace, not trim()'s (which drops NBSP, U+3000, U+FEFF: lines
    // the server answers with `?`).
    if (isBlankLine(cmd)) {
      return jsonError(c, 400, "empty command (a blank line gets no reply)");
    }
    if (cmd.length > MAX_LINE) return jsonError(c, 413, "command too long");
    const s = d.herd.snapshot().servers.find((x) => x.name === server);
    if (!s) return jsonError(c, 404, `no server named ${server}`);
    if (!s.running) return jsonError(c, 409, `${server} is stopped`);
    const host = s.host === "0.0.0.0" || s.host === ""
      ? "127.0.0.1"
      : s.host === "::"
      ? "::1"
      : s.host;
    const res = await sendCommand(host, s.port, cmd, d.commandTimeoutMs);
    if (res.error && res.bytes === 0) {
      return c.json({ server, line: cmd, ...res }, 502);
    }
    return c.json({ server, line: cmd, ...res });
  },
};
