/** dashboard/manifest.ts: the route table matches dashboard/routes/. */

import assert from "node:assert/strict";
import { routePattern, ROUTES } from "../dashboard/manifest.ts";

Deno.test("routes: the manifest lists exactly the files in routes/, with Fresh-style paths", async () => {
  const files: string[] = [];
  const walk = async (dir: URL, rel: string) => {
    for await (const e of Deno.readDir(dir)) {
      if (e.isDirectory) await walk(new URL(`${e.name}/`, dir), `${rel}${e.name}/`);
      else if (/\.(tsx?|jsx?)$/.test(e.name)) files.push(`${rel}${e.name}`);
    }
  };
  await walk(new URL("../dashboard/routes/", import.meta.url), "routes/");
  assert.deepEqual(files.sort(), Object.keys(ROUTES).sort());
  assert.deepEqual(routePattern("routes/index.tsx"), "/");
  assert.deepEqual(routePattern("routes/api/events.ts"), "/api/events");
  assert.deepEqual(
    routePattern("routes/api/servers/[name]/[action].ts"),
    "/api/servers/:name/:action",
  );
});
