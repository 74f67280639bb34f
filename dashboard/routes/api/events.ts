/**
 * `GET /api/events`: the herd's events as Server-Sent Events (see `web/hub.ts`). Frames carry a
 * JSON array of events and the id of the last one; `Last-Event-ID` (or `?after=<id>`) resumes
 * after that event; comment lines are heartbeats; `event: gap` says events were lost to a slow
 * reader; `event: hello` opens every stream.
 *
 * The stream is a plain ReadableStream rather than `hono/streaming`'s `streamSSE`: the hub needs
 * the stream's backpressure (`desiredSize`) to leave slow readers behind, and to error the
 * response to cut a stalled one loose, which streamSSE's writer hides.
 *
 * At most `hub.maxStreams` streams are open (hub.ts `eventStreamCap`: half the port's
 * connections); a stream beyond them gets `503 {"error":"too many event streams ..."}` with
 * `Retry-After`, rather than closing an older one: readers that reconnect would otherwise take
 * turns closing each other forever. The page tries again after 2 s.
 */

import type { RouteModule } from "../../context.ts";
import { parseEventId, sseBody } from "../../hub.ts";

export const handler: RouteModule["handler"] = {
  GET(c, d) {
    if (d.hub.full) {
      d.hub.refuse();
      return c.json(
        { error: `too many event streams (${d.hub.maxStreams} open); try again later` },
        503,
        { "retry-after": "5", "cache-control": "no-store" },
      );
    }
    const resume = parseEventId(c.req.header("last-event-id")) ??
      parseEventId(c.req.query("after"));
    return c.body(sseBody(d.hub, resume), 200, {
      "content-type": "text/event-stream; charset=utf-8",
      // no-transform: no proxy may compress (and so buffer) the stream either.
      "cache-control": "no-store, no-transform",
      "x-accel-buffering": "no",
    });
  },
};
