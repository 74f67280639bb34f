/**
 * `deno task build`: bundles the dashboard's islands for the browser into dashboard/static/build/.
 *
 *     deno task build            # minified
 *     deno task build --dev      # readable output
 *     deno task build --if-stale # only when a source changed since the last build (start does this)
 *
 * @module
 */

import { buildIslands, bundleInputsHash, inputsStamp } from "./bundle.ts";
import { errText } from "../servers/text.ts";

if (import.meta.main) {
  const started = performance.now();
  const dev = Deno.args.includes("--dev");
  if (Deno.args.includes("--if-stale")) {
    const built = await Deno.readTextFile(inputsStamp()).catch(() => "");
    if (built.trim() === await bundleInputsHash()) Deno.exit(0);
  }
  try {
    const m = await buildIslands({ minify: !dev, verbose: dev });
    const ms = Math.round(performance.now() - started);
    console.log(
      `built ${Object.keys(m.islands).length} islands + ${m.chunks.length} shared chunk(s) ` +
        `into dashboard/static/build/ in ${ms} ms (version ${m.version})`,
    );
  } catch (err) {
    console.error(errText(err));
    Deno.exit(1);
  }
}
