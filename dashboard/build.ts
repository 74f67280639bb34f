/**
 * `deno task build`: bundles the dashboard's islands for the browser into dashboard/static/build/.
 *
 *     deno task build            # minified
 *     deno task build --dev      # readable output
 *
 * @module
 */

import { buildIslands } from "./bundle.ts";

if (import.meta.main) {
  const started = performance.now();
  const dev = Deno.args.includes("--dev");
  try {
    const m = await buildIslands({ minify: !dev, verbose: dev });
    const ms = Math.round(performance.now() - started);
    console.log(
      `built ${Object.keys(m.islands).length} islands + ${m.chunks.length} shared chunk(s) ` +
        `into dashboard/static/build/ in ${ms} ms (version ${m.version})`,
    );
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    Deno.exit(1);
  }
}
