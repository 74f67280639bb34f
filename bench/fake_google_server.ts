/**
 * The tests' fake Google Places (tests/_helpers/fake_google.ts) as its own process, for the
 * WHATSAT figure: the herd's `--places new --places-url http://127.0.0.1:PORT` then pays a real
 * loopback HTTP request per query, without the fake sharing the orchestrator's event loop.
 *
 *     deno run -A bench/fake_google_server.ts --key KEY
 *
 * Prints `READY <origin>` once listening. On SIGTERM prints one JSON line
 * `{requests, maxInFlight}` and exits. The fake keeps every request it gets; this process
 * counts them and empties that list every second, so a long run does not grow it without bound.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { startFakeGoogle } from "../tests/_helpers/fake_google.ts";

if (import.meta.main) {
  const { values: v } = parseArgs({ args: Deno.args, options: { key: { type: "string" } } });
  if (!v.key) {
    console.error("usage: fake_google_server.ts --key KEY");
    Deno.exit(2);
  }
  const fake = startFakeGoogle(v.key);
  let requests = 0;
  const drain = () => {
    requests += fake.requests.length;
    fake.requests.length = 0;
  };
  setInterval(drain, 1000);
  Deno.addSignalListener("SIGTERM", async () => {
    drain();
    console.log(JSON.stringify({ requests, maxInFlight: fake.maxInFlight }));
    await fake.close();
    Deno.exit(0);
  });
  console.log(`READY ${fake.origin}`);
}
