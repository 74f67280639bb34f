/** dashboard/manifest.ts: the route table matches dashboard/routes/. */

import { assertEquals } from "./_helpers/assert.ts";
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
  assertEquals(files.sort(), Object.keys(ROUTES).sort());
  assertEquals(routePattern("routes/index.tsx"), "/");
  assertEquals(routePattern("routes/api/events.ts"), "/api/events");
  assertEquals(routePattern("routes/api/servers/[name]/[action].ts"), "/api/servers/:name/:action");
});
