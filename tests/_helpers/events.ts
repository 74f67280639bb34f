/**
 * Herd events for tests that feed the dashboard's pieces without a herd.
 *
 * @module
 */

import type { HerdEvent } from "../../servers/events.ts";

/** A `location.accepted` event: `client` at +1+2 (or `lat`, `lng` on the map) from `server`. */
export function accepted(
  server: string,
  client: string,
  time = "1.5",
  lat = 1,
  lng = 2,
): HerdEvent {
  return {
    kind: "location.accepted",
    t: 0,
    server,
    record: { origin: server, diff: "+0.000000000", client, location: "+1+2", time },
    from: null,
    lat,
    lng,
  };
}
