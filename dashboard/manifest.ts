/**
 * The route table: every file in `routes/`, keyed by its path (Fresh's convention: `index` is the
 * directory, `[name]` is a parameter, the extension goes). Kept by hand like Fresh's generated
 * manifest; a test checks it lists exactly the files in routes/.
 *
 * @module
 */

import type { RouteModule } from "./context.ts";
import * as index from "./routes/index.tsx";
import * as metrics from "./routes/metrics.ts";
import * as client from "./routes/api/client.ts";
import * as clients from "./routes/api/clients.ts";
import * as clusters from "./routes/api/clusters.ts";
import * as healthz from "./routes/healthz.ts";
import * as status from "./routes/status.ts";
import * as command from "./routes/api/command.ts";
import * as events from "./routes/api/events.ts";
import * as state from "./routes/api/state.ts";
import * as world from "./routes/api/world.ts";
import * as serverAction from "./routes/api/servers/[name]/[action].ts";
import * as link from "./routes/api/links/[a]/[b].ts";

/** Route file (relative to the repository) -> module. */
export const ROUTES: Record<string, RouteModule> = {
  "routes/index.tsx": index,
  "routes/metrics.ts": metrics,
  "routes/api/client.ts": client,
  "routes/api/clients.ts": clients,
  "routes/api/clusters.ts": clusters,
  "routes/healthz.ts": healthz,
  "routes/status.ts": status,
  "routes/api/command.ts": command,
  "routes/api/events.ts": events,
  "routes/api/state.ts": state,
  "routes/api/world.ts": world,
  "routes/api/servers/[name]/[action].ts": serverAction,
  "routes/api/links/[a]/[b].ts": link,
};

/** The URL pattern (Hono syntax) of a route file: `routes/api/servers/[name].ts` -> `/api/servers/:name`. */
export function routePattern(file: string): string {
  const p = file
    .replace(/^routes\//, "")
    .replace(/\.(tsx?|jsx?)$/, "")
    .replace(/(^|\/)index$/, "")
    .replace(/\[([A-Za-z_][A-Za-z0-9_]*)\]/g, ":$1");
  return "/" + p;
}
