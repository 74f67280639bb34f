/**
 * Places end to end: WHATSAT over real TCP to herd servers whose Places provider talks HTTP to a
 * fake Google on loopback (tests/_helpers/fake_google.ts).
 *
 * - The real CLI as a child process (`main.ts start --places new|legacy --places-url <fake>`):
 *   the exact request Google would get, the translated reply in the protocol layout, truncation
 *   to the bound, and that the API key shows up in no reply, log file or start-up output. Also
 *   `start` with no key answering from the offline index.
 * - In-process herds for every failure mode of both APIs (HTTP 400/403/429/500, non-JSON, hung
 *   headers, hung body, REQUEST_DENIED, refused connection, unresolvable host, a key echoed
 *   back): the reply keeps the layout with `"results" : []`, a non-OK status and an
 *   `error_message`, and the key is in no reply, event or log line.
 * - A hung upstream delays neither an IAMAT on another connection nor other clients' WHATSATs;
 *   identical concurrent WHATSATs share one upstream request.
 */

import assert from "node:assert/strict";
import { type FakeGoogle, type FakeMode, startFakeGoogle } from "./_helpers/fake_google.ts";
import { exchange, freePorts, startSeedHerd, TcpClient, waitFor } from "./_helpers/net.ts";
import { createPlacesProvider, type PlacesOptions } from "../servers/places/select.ts";
import { NEW_API_FIELD_MASK } from "../servers/places/google_new.ts";
import { formatLegacyJson } from "../servers/places/legacy_json.ts";
import type { LegacyNearbyResponse } from "../servers/places/provider.ts";
import { binaryToBytes } from "../servers/lines.ts";
import { openLogs } from "../servers/log.ts";
import { taskFlags } from "./_helpers/task_flags.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** Distinctive, so any leak is unambiguous (plain URL-safe characters, like a real key). */
const KEY = "AIzaFAKE-tcp-Places-KEY_93c1e7a2f45b";
const UCLA = "+34.068930-118.445127";
const TIME = "1700000000.123456789";
/** Provider deadline for the failure-mode tests, ms. */
const FAST = 300;

// ---------------------------------------------------------------------------------------------
// Helpers

/** A wire reply (binary string) as text. */
function utf8(binary: string): string {
  return new TextDecoder().decode(binaryToBytes(binary));
}

/** Asserts the key is nowhere in `text`, raw or URL-encoded. */
function assertNoKey(text: string, where: string): void {
  assert.ok(!text.includes(KEY), `API key found in ${where}`);
  assert.ok(!text.includes(encodeURIComponent(KEY)), `encoded API key found in ${where}`);
}

/**
 * Checks a WHATSAT reply's layout and returns its JSON: the AT line, LF, Google's legacy JSON
 * layout (3-space indent, `"key" : value`, sorted keys, no blank line), then `}\n\n`.
 */
function checkLayout(reply: string, atLine: string): LegacyNearbyResponse {
  const text = utf8(reply);
  assertNoKey(text, "a WHATSAT reply");
  const lf = text.indexOf("\n");
  assert.deepEqual(text.slice(0, lf), atLine, "AT line");
  assert.ok(
    text.endsWith("}\n\n"),
    `reply must end with }\\n\\n: ${JSON.stringify(text.slice(-20))}`,
  );
  const json = text.slice(lf + 1, -2);
  assert.ok(json.startsWith('{\n   "'), `3-space indent: ${JSON.stringify(json.slice(0, 20))}`);
  assert.ok(!json.includes("\n\n"), "no blank line inside the JSON");
  for (const line of json.split("\n")) {
    assert.deepEqual(line.match(/^ */)![0].length % 3, 0, `indent of ${JSON.stringify(line)}`);
  }
  const body = JSON.parse(json) as LegacyNearbyResponse;
  // The printed text is exactly Google's legacy layout of that value.
  assert.deepEqual(json, formatLegacyJson(body), "legacy JSON layout");
  assert.ok(Array.isArray(body.html_attributions), "html_attributions");
  assert.ok(Array.isArray(body.results), "results");
  assert.deepEqual(typeof body.status, "string");
  return body;
}

/** A failure reply: the layout, `"results" : []`, the status and a short error message. */
function checkFailure(
  reply: string,
  atLine: string,
  status: string,
  message: string | RegExp,
): void {
  const body = checkLayout(reply, atLine);
  assert.match(utf8(reply), /"results" : \[\]/);
  assert.deepEqual(body.status, status, `status in ${utf8(reply)}`);
  assert.deepEqual(body.results, []);
  assert.deepEqual(typeof body.error_message, "string");
  assert.ok(body.error_message!.length > 0 && body.error_message!.length <= 200);
  if (typeof message === "string") assert.deepEqual(body.error_message, message);
  else assert.match(body.error_message!, message);
  assert.deepEqual(
    Object.keys(body).sort(),
    ["error_message", "html_attributions", "results", "status"],
  );
}

/** A port nothing listens on (bound, then released). */
function closedPort(): number {
  return freePorts(1)[0];
}

/** Sends one IAMAT on `c` and returns its AT line (without LF). */
async function iamat(c: TcpClient, client: string, location = UCLA): Promise<string> {
  const before = c.received.length;
  await c.send(`IAMAT ${client} ${location} ${TIME}\n`);
  await c.waitUntil((r) => r.indexOf("\n", before) !== -1);
  const line = c.received.slice(before, c.received.indexOf("\n", before));
  assert.match(line, /^AT \w+ [+-]\d+\.\d{9} /);
  assert.ok(line.endsWith(` ${client} ${location} ${TIME}`), line);
  return line;
}

/** Sends one command on `c` and waits for its one reply (an AT/? line, or a WHATSAT reply). */
async function ask(c: TcpClient, line: string, ms = 3000): Promise<string> {
  const before = c.received.length;
  await c.send(line + "\n");
  let reply = "";
  await c.waitUntil((r) => {
    const rest = r.slice(before);
    const lf = rest.indexOf("\n");
    if (lf === -1) return false;
    if (line.startsWith("WHATSAT") && rest.startsWith("AT ")) {
      const end = rest.indexOf("}\n\n", lf);
      if (end === -1) return false;
      reply = rest.slice(0, end + 3);
    } else {
      reply = rest.slice(0, lf + 1);
    }
    return true;
  }, ms);
  return reply;
}

/**
 * An in-process seed herd using `places`, with every event captured (as JSON) and log files
 * written to a temp dir. After `fn`, the herd stops, and no event and no log line may hold the
 * key.
 */
async function withHerd(
  places: PlacesOptions,
  fn: (t: Awaited<ReturnType<typeof startSeedHerd>>, events: string[]) => Promise<void>,
): Promise<string> {
  const t = await startSeedHerd({ places: createPlacesProvider(places) });
  const events: string[] = [];
  const off = t.herd.bus.subscribe((e) => events.push(JSON.stringify(e)));
  const dir = await Deno.makeTempDir({ prefix: "places_tcp_logs_" });
  const logs = await openLogs(t.herd.bus, dir, [...t.herd.servers.keys()]);
  let logText = "";
  try {
    await fn(t, events);
  } finally {
    await t.close();
    off();
    await logs.close();
    for await (const entry of Deno.readDir(dir)) {
      logText += await Deno.readTextFile(`${dir}/${entry.name}`);
    }
    await Deno.remove(dir, { recursive: true });
  }
  for (const e of events) assertNoKey(e, "an event");
  assertNoKey(logText, "a log file");
  return logText;
}

/** Runs `fn` with a fresh fake Google, always closing it. */
async function withFake(fn: (fake: FakeGoogle) => Promise<void>): Promise<void> {
  const fake = startFakeGoogle(KEY);
  try {
    await fn(fake);
  } finally {
    await fake.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The real CLI as a child process

/** A running `main.ts start` child whose stdout and stderr are collected as they come. */
class HerdProcess {
  #child: Deno.ChildProcess;
  #pumps: Promise<void>[];
  stdout = "";
  stderr = "";

  constructor(args: string[], env: Record<string, string>) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...taskFlags("start"), MAIN, "start", ...args],
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#pumps = [
      this.#pump(this.#child.stdout, (s) => (this.stdout += s)),
      this.#pump(this.#child.stderr, (s) => (this.stderr += s)),
    ];
  }

  async #pump(stream: ReadableStream<Uint8Array>, add: (s: string) => void): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) add(decoder.decode(chunk, { stream: true }));
    add(decoder.decode());
  }

  /**
   * Waits (bounded) for the start-up output to include `text`. `start` builds the dashboard
   * when stale and loads the offline index first: over 20 s on a box at load 15.
   */
  async waitForOutput(text: string, ms = 60_000): Promise<void> {
    await waitFor(() => this.stdout.includes(text), ms, `"${text}" in ${this.stdout}`).catch(
      (err) => {
        throw new Error(`${err.message}\nstderr: ${this.stderr}`);
      },
    );
  }

  /** SIGTERM, then waits (bounded) for the exit; SIGKILL if it hangs. Returns the exit code. */
  async stop(ms = 10000): Promise<number> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // already exited
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), ms)));
    const status = await Promise.race([this.#child.status, timeout]);
    clearTimeout(timer);
    if (status === "timeout") {
      this.#child.kill("SIGKILL");
      await this.#child.status;
    }
    await Promise.all(this.#pumps);
    return status === "timeout" ? -1 : status.code;
  }

  /** Kills the child if still running (cleanup path). */
  async kill(): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await this.#child.status;
    await Promise.all(this.#pumps);
  }
}

/**
 * Starts `main.ts start` on a two-server config (Alpha—Beta) on free ports, runs `fn`, stops it
 * with SIGTERM, and returns what it printed and logged.
 */
async function withCli(
  extraArgs: string[],
  env: Record<string, string>,
  fn: (ports: { alpha: number; beta: number }, p: HerdProcess) => Promise<void>,
): Promise<{ stdout: string; stderr: string; logs: Record<string, string> }> {
  const dir = await Deno.makeTempDir({ prefix: "places_tcp_cli_" });
  const [alpha, beta] = freePorts(2);
  const config = `${dir}/herd.json`;
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      servers: { Alpha: { port: alpha, neighbors: ["Beta"] }, Beta: { port: beta } },
    }),
  );
  const p = new HerdProcess([
    "--config",
    config,
    ...extraArgs,
    "--log-dir",
    `${dir}/logs`,
    "--memory",
    "--no-dashboard",
  ], env);
  try {
    await p.waitForOutput("Logs: ");
    // The start-up lines come once the servers listen; the Alpha—Beta link is dialled after.
    // Its LINK UP log line (logs are flushed every 50 ms) says the herd is healthy.
    await waitFor(
      async () => {
        try {
          return (await Deno.readTextFile(`${dir}/logs/Alpha.log`)).includes("LINK UP Beta");
        } catch {
          return false;
        }
      },
      10000,
      "Alpha—Beta link up",
    );
    await fn({ alpha, beta }, p);
    assert.deepEqual(await p.stop(), 0, `exit status after SIGTERM; stderr: ${p.stderr}`);
    const logs: Record<string, string> = {};
    for await (const entry of Deno.readDir(`${dir}/logs`)) {
      logs[entry.name] = await Deno.readTextFile(`${dir}/logs/${entry.name}`);
    }
    return { stdout: p.stdout, stderr: p.stderr, logs };
  } finally {
    await p.kill();
    await Deno.remove(dir, { recursive: true });
  }
}

/** The legacy JSON the herd prints for the fake's first two New places (docs/places.md, "How the New response is translated"). */
const NEW_TRANSLATED_2 = `{
   "html_attributions" : [],
   "results" : [
      {
         "business_status" : "OPERATIONAL",
         "geometry" : {
            "location" : {
               "lat" : 34.068921,
               "lng" : -118.4451811
            }
         },
         "name" : "University of California, Los Angeles",
         "place_id" : "ChIJ_PLACEHOLDER_UCLA_000",
         "rating" : 4.6,
         "reference" : "ChIJ_PLACEHOLDER_UCLA_000",
         "types" : [ "university", "point_of_interest", "establishment" ],
         "user_ratings_total" : 4821,
         "vicinity" : "Los Angeles"
      },
      {
         "business_status" : "OPERATIONAL",
         "geometry" : {
            "location" : {
               "lat" : 34.0704937,
               "lng" : -118.4434471
            },
            "viewport" : {
               "northeast" : {
                  "lat" : 34.07184268029149,
                  "lng" : -118.4420981197085
               },
               "southwest" : {
                  "lat" : 34.06914471970849,
                  "lng" : -118.4447960802915
               }
            }
         },
         "icon_background_color" : "#FF9E67",
         "icon_mask_base_uri" : "https://maps.gstatic.com/mapfiles/place_api/icons/v2/cafe_pinlet",
         "name" : "Example Campus Cafe",
         "opening_hours" : {
            "open_now" : true
         },
         "photos" : [
            {
               "height" : 2432,
               "html_attributions" : [
                  "\\u003ca href=\\"https://maps.google.com/maps/contrib/000000000000000000000\\"\\u003eA Google User\\u003c/a\\u003e"
               ],
               "photo_reference" : "places/ChIJ_PLACEHOLDER_CAFE_001/photos/PHOTO_REF_1",
               "width" : 3648
            }
         ],
         "place_id" : "ChIJ_PLACEHOLDER_CAFE_001",
         "plus_code" : {
            "compound_code" : "3H9V+H4 Los Angeles, CA, USA",
            "global_code" : "85633H9V+H4"
         },
         "price_level" : 1,
         "rating" : 4.2,
         "reference" : "ChIJ_PLACEHOLDER_CAFE_001",
         "types" : [ "cafe", "food", "point_of_interest", "establishment" ],
         "user_ratings_total" : 312,
         "vicinity" : "308 Westwood Plaza, Los Angeles"
      }
   ],
   "status" : "OK"
}`;

Deno.test("CLI --places new: exact request, translated reply, bound, and the key nowhere", async () => {
  await withFake(async (fake) => {
    const out = await withCli(
      ["--places", "new", "--places-url", fake.origin, "--places-timeout-ms", "1000"],
      { GOOGLE_PLACES_API_KEY: KEY },
      async ({ alpha, beta }) => {
        const a = await TcpClient.connect(alpha);
        const b = await TcpClient.connect(beta);
        try {
          const at = await iamat(a, "kiwi.cs.ucla.edu");
          assert.ok(at.startsWith("AT Alpha "));
          // Asked at Beta right after the AT reply: Beta prints Alpha's AT line.
          const reply = await ask(b, "WHATSAT kiwi.cs.ucla.edu 10 2");
          assert.deepEqual(fake.requests.length, 1);
          const req = fake.requests[0];
          assert.deepEqual(req.method, "POST");
          assert.deepEqual(req.path, "/v1/places:searchNearby");
          assert.deepEqual(req.rawQuery, "", "nothing (least of all the key) in the URL");
          assert.deepEqual(req.headers["x-goog-api-key"], KEY);
          assert.deepEqual(req.headers["x-goog-fieldmask"], NEW_API_FIELD_MASK);
          assert.deepEqual(
            NEW_API_FIELD_MASK,
            "places.id,places.displayName,places.location,places.viewport," +
              "places.shortFormattedAddress,places.formattedAddress,places.types,places.rating," +
              "places.userRatingCount,places.businessStatus,places.priceLevel," +
              "places.currentOpeningHours.openNow,places.iconBackgroundColor," +
              "places.iconMaskBaseUri,places.plusCode,places.photos",
          );
          assert.deepEqual(req.headers["content-type"], "application/json");
          assert.deepEqual(JSON.parse(req.body), {
            maxResultCount: 2,
            locationRestriction: {
              circle: { center: { latitude: 34.06893, longitude: -118.445127 }, radius: 10000 },
            },
            rankPreference: "POPULARITY",
          });
          // The exact reply: Alpha's AT line, the translated JSON, two LFs.
          assert.deepEqual(utf8(reply), `${at}\n${NEW_TRANSLATED_2}\n\n`);
          const body = checkLayout(reply, at);
          assert.deepEqual(body.results.length, 2, "cut to the bound");

          // Bound 1 with a fractional radius, at Alpha.
          const one = checkLayout(await ask(a, "WHATSAT kiwi.cs.ucla.edu 1.5 1"), at);
          assert.deepEqual(one.results.length, 1);
          assert.deepEqual(one.results[0].name, "University of California, Los Angeles");
          const body2 = JSON.parse(fake.requests[1].body);
          assert.deepEqual(body2.maxResultCount, 1);
          assert.deepEqual(body2.locationRestriction.circle.radius, 1500);

          // Bound 20: all three the fake has; bound 0: no request at all.
          assert.deepEqual(
            checkLayout(await ask(a, "WHATSAT kiwi.cs.ucla.edu 50 20"), at).results.length,
            3,
          );
          assert.deepEqual(JSON.parse(fake.requests[2].body).maxResultCount, 20);
          const zero = checkLayout(await ask(a, "WHATSAT kiwi.cs.ucla.edu 5 0"), at);
          assert.deepEqual(zero, { html_attributions: [], results: [], status: "ZERO_RESULTS" });
          assert.deepEqual(fake.requests.length, 3);

          // Failures through the CLI too; one of them quotes the key back.
          fake.mode = "echoKey";
          checkFailure(
            await ask(a, "WHATSAT kiwi.cs.ucla.edu 10 3"),
            at,
            "INVALID_REQUEST",
            "API key not valid: REDACTED",
          );
          fake.mode = "denied";
          checkFailure(
            await ask(b, "WHATSAT kiwi.cs.ucla.edu 10 3"),
            at,
            "REQUEST_DENIED",
            "The provided API key is invalid.",
          );
          fake.mode = "hang";
          checkFailure(
            await ask(a, "WHATSAT kiwi.cs.ucla.edu 10 4", 5000),
            at,
            "UNKNOWN_ERROR",
            "Places request timed out after 1000 ms",
          );
          assert.deepEqual(fake.requests.length, 6);
          for (const r of fake.requests) assert.deepEqual(r.headers["x-goog-api-key"], KEY);
        } finally {
          await a.close();
          await b.close();
        }
      },
    );
    // Start-up output names the provider and the fake's origin, never the key.
    assert.match(
      out.stdout,
      new RegExp(
        `Places: new \\(Places API \\(New\\) at ${
          fake.origin.replaceAll(".", "\\.")
        }; timeout 1000 ms, 16 in flight, cache off\\)`,
      ),
    );
    assertNoKey(out.stdout, "stdout");
    assertNoKey(out.stderr, "stderr");
    assert.deepEqual(Object.keys(out.logs).sort(), ["Alpha.log", "Beta.log"]);
    for (const [name, text] of Object.entries(out.logs)) assertNoKey(text, name);
    const all = Object.values(out.logs).join("\n");
    assert.match(
      out.logs["Beta.log"],
      /PLACES new status=OK results=2 latency=[\d.]+ms coalesced=false client=kiwi\.cs\.ucla\.edu radius=10km bound=2/,
    );
    assert.match(all, /status=INVALID_REQUEST results=0/);
    assert.match(all, /error="API key not valid: REDACTED"/);
    assert.match(all, /status=REQUEST_DENIED results=0/);
    assert.match(all, /error="Places request timed out after 1000 ms"/);
    // Every input line and reply is logged (connection numbers count link dials too); a
    // WHATSAT's reply as its AT line and a summary of the JSON body, never the body.
    assert.match(out.logs["Beta.log"], /IN #\d+ WHATSAT kiwi\.cs\.ucla\.edu 10 2\n/);
    assert.match(
      out.logs["Beta.log"],
      /OUT #\d+ AT Alpha \S+ kiwi\.cs\.ucla\.edu \S+ \S+ \[JSON \d+ bytes, status=OK, results=2\]\n/,
    );
    assert.doesNotMatch(all, /"html_attributions"/);
  });
});

Deno.test("CLI --places legacy: GET with location, radius, key; body cut to the bound", async () => {
  await withFake(async (fake) => {
    const out = await withCli(
      ["--places", "legacy", "--places-url", fake.origin + "/ignored/path"],
      { GOOGLE_PLACES_API_KEY: KEY },
      async ({ alpha }) => {
        await using a = await TcpClient.connect(alpha);
        const at = await iamat(a, "kiwi");
        const body = checkLayout(await ask(a, "WHATSAT kiwi 10 3"), at);
        assert.deepEqual(fake.requests.length, 1);
        const req = fake.requests[0];
        assert.deepEqual(req.method, "GET");
        assert.deepEqual(req.path, "/maps/api/place/nearbysearch/json");
        assert.deepEqual(req.rawQuery, `location=34.06893,-118.445127&radius=10000&key=${KEY}`);
        assert.ok(!req.rawQuery.includes("+"), "no raw + in the query");
        assert.deepEqual(req.query.location, "34.06893,-118.445127");
        assert.deepEqual(req.headers["x-goog-api-key"], undefined);
        // Google's body passed through: 20 results cut to 3, next_page_token kept.
        assert.deepEqual(body.status, "OK");
        assert.deepEqual(body.results.map((r) => r.name), [
          "Legacy Place 0",
          "Legacy Place 1",
          "Legacy Place 2",
        ]);
        assert.deepEqual(body.next_page_token, "AW30NDw-PLACEHOLDER-TOKEN-not-real");
        // A southern/eastern point and a fractional radius.
        const at2 = await iamat(a, "emu", "-33.8688+151.2093");
        checkLayout(await ask(a, "WHATSAT emu 0.25 20"), at2);
        assert.deepEqual(
          fake.requests[1].rawQuery,
          `location=-33.8688,151.2093&radius=250&key=${KEY}`,
        );
        fake.mode = "denied";
        checkFailure(
          await ask(a, "WHATSAT kiwi 10 3"),
          at,
          "REQUEST_DENIED",
          "The provided API key is invalid.",
        );
      },
    );
    assert.match(
      out.stdout,
      new RegExp(
        RegExp.escape(`Places: legacy (Places API (Legacy) Nearby Search at ${fake.origin};`),
      ),
    );
    assertNoKey(out.stdout, "stdout");
    assertNoKey(out.stderr, "stderr");
    for (const [name, text] of Object.entries(out.logs)) assertNoKey(text, name);
    assert.match(out.logs["Alpha.log"], /PLACES legacy status=OK results=3/);
    assert.match(out.logs["Alpha.log"], /PLACES legacy status=REQUEST_DENIED results=0/);
  });
});

Deno.test("CLI without a key: start answers WHATSAT from the offline index", async () => {
  await withFake(async (fake) => {
    const out = await withCli(
      // No key and no Places flag: offline (a Google flag here is refused: tests/cli.proc_test.ts).
      [],
      { GOOGLE_PLACES_API_KEY: "" },
      async ({ alpha, beta }) => {
        const a = await TcpClient.connect(alpha);
        const b = await TcpClient.connect(beta);
        try {
          const at = await iamat(a, "kiwi");
          const body = checkLayout(await ask(b, "WHATSAT kiwi 10 5"), at);
          assert.deepEqual(body.status, "OK");
          assert.deepEqual(body.results.length, 5);
          for (const r of body.results) assert.deepEqual(typeof r.name, "string");
          assert.match(body.html_attributions[0], /GeoNames/);
        } finally {
          await a.close();
          await b.close();
        }
      },
    );
    assert.deepEqual(fake.requests.length, 0, "offline never calls Google");
    assert.match(out.stdout, /Places: offline \(GeoNames cities, CC BY 4\.0\)/);
    assert.match(out.logs["Beta.log"], /PLACES offline status=OK results=5/);
  });
});

// ---------------------------------------------------------------------------------------------
// In-process herds: every failure mode, both APIs

interface Failure {
  mode: FakeMode;
  newStatus: string;
  newMessage: string | RegExp;
  legacyStatus: string;
  legacyMessage: string | RegExp;
}

const TIMEOUT = `Places request timed out after ${FAST} ms`;

const FAILURES: Failure[] = [
  {
    mode: "http400",
    newStatus: "INVALID_REQUEST",
    newMessage: "Request contains an invalid argument.",
    legacyStatus: "INVALID_REQUEST",
    legacyMessage: "Request contains an invalid argument.",
  },
  {
    mode: "http403",
    newStatus: "REQUEST_DENIED",
    newMessage: "Places API (New) has not been used.",
    legacyStatus: "REQUEST_DENIED",
    legacyMessage: "Places API (New) has not been used.",
  },
  {
    mode: "http429",
    newStatus: "OVER_QUERY_LIMIT",
    newMessage: "Quota exceeded.",
    legacyStatus: "OVER_QUERY_LIMIT",
    legacyMessage: "Quota exceeded.",
  },
  {
    mode: "http500",
    newStatus: "UNKNOWN_ERROR",
    newMessage: "Internal error encountered.",
    legacyStatus: "UNKNOWN_ERROR",
    legacyMessage: "Internal error encountered.",
  },
  {
    mode: "notjson",
    newStatus: "UNKNOWN_ERROR",
    newMessage: "Places API (New) answer is not JSON",
    legacyStatus: "UNKNOWN_ERROR",
    legacyMessage: "Places API answer is not JSON",
  },
  {
    mode: "hang",
    newStatus: "UNKNOWN_ERROR",
    newMessage: TIMEOUT,
    legacyStatus: "UNKNOWN_ERROR",
    legacyMessage: TIMEOUT,
  },
  {
    mode: "hangBody",
    newStatus: "UNKNOWN_ERROR",
    newMessage: TIMEOUT,
    legacyStatus: "UNKNOWN_ERROR",
    legacyMessage: TIMEOUT,
  },
  {
    // Legacy: HTTP 200 with Google's REQUEST_DENIED body; New: HTTP 403.
    mode: "denied",
    newStatus: "REQUEST_DENIED",
    newMessage: "The provided API key is invalid.",
    legacyStatus: "REQUEST_DENIED",
    legacyMessage: "The provided API key is invalid.",
  },
  {
    mode: "echoKey",
    newStatus: "INVALID_REQUEST",
    newMessage: "API key not valid: REDACTED",
    legacyStatus: "INVALID_REQUEST",
    legacyMessage: "API key not valid: REDACTED",
  },
];

for (const api of ["new", "legacy"] as const) {
  Deno.test(`${api}: every failure mode over TCP keeps the layout, a non-OK status, no key`, async () => {
    // 1. Modes of a reachable (fake) Google.
    await withFake(async (fake) => {
      const logText = await withHerd(
        { places: api, apiKey: KEY, baseUrl: fake.origin, timeoutMs: FAST },
        async (t, events) => {
          await using c = await TcpClient.connect(t.port("Hill"));
          const at = await iamat(c, "kiwi");
          for (const f of FAILURES) {
            fake.mode = f.mode;
            const sent = fake.requests.length;
            const t0 = performance.now();
            const reply = await ask(c, "WHATSAT kiwi 10 5", 3000);
            const ms = performance.now() - t0;
            const status = api === "new" ? f.newStatus : f.legacyStatus;
            const message = api === "new" ? f.newMessage : f.legacyMessage;
            checkFailure(reply, at, status, message);
            assert.deepEqual(fake.requests.length, sent + 1, `${f.mode}: one upstream request`);
            if (f.mode.startsWith("hang")) {
              assert.ok(ms >= FAST - 20 && ms < FAST + 700, `${f.mode} answered after ${ms} ms`);
            }
            const ev = events.filter((e) => e.includes('"kind":"whatsat"')).at(-1)!;
            const parsed = JSON.parse(ev);
            assert.deepEqual(parsed.provider, api);
            assert.deepEqual(parsed.status, status);
            assert.deepEqual(parsed.count, 0);
            assert.deepEqual(typeof parsed.error, "string");
          }
          // And it recovers once Google does.
          fake.mode = "ok";
          const ok = checkLayout(await ask(c, "WHATSAT kiwi 10 5"), at);
          assert.deepEqual(ok.status, "OK");
          assert.deepEqual(ok.results.length, api === "new" ? 3 : 5);
        },
      );
      assert.match(
        logText,
        new RegExp(RegExp.escape(`PLACES ${api} status=OVER_QUERY_LIMIT results=0`)),
      );
      assert.match(logText, new RegExp(RegExp.escape(`error="${TIMEOUT}"`)));
      assert.match(logText, /error="API key not valid: REDACTED"/);
    });

    // 2. Nothing listening (refused) and a host that does not resolve.
    const port = closedPort();
    const unreachable: [string, RegExp][] = [
      [
        `http://127.0.0.1:${port}`,
        new RegExp(`^Cannot reach 127\\.0\\.0\\.1:${port}: connection refused$`),
      ],
      ["http://nonexistent.invalid", /^Cannot reach nonexistent\.invalid: host not found$/],
    ];
    for (const [baseUrl, message] of unreachable) {
      const logText = await withHerd(
        { places: api, apiKey: KEY, baseUrl, timeoutMs: 2000 },
        async (t) => {
          await using c = await TcpClient.connect(t.port("Smith"));
          const at = await iamat(c, "kiwi");
          checkFailure(await ask(c, "WHATSAT kiwi 10 5", 5000), at, "UNKNOWN_ERROR", message);
        },
      );
      assert.match(
        logText,
        new RegExp(RegExp.escape(`PLACES ${api} status=UNKNOWN_ERROR results=0`)),
      );
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Load: a hung upstream, coalescing

Deno.test("a hung upstream delays neither an IAMAT on another connection nor other clients", async () => {
  const HANG = 1500;
  await withFake(async (fake) => {
    await withHerd(
      { places: "new", apiKey: KEY, baseUrl: fake.origin, timeoutMs: HANG },
      async (t) => {
        fake.mode = "hang";
        const a = await TcpClient.connect(t.port("Hill"));
        const others: TcpClient[] = [];
        try {
          const at = await iamat(a, "kiwi");
          const t0 = performance.now();
          // On A, an IAMAT after the WHATSAT is answered after it, in order.
          await a.send("WHATSAT kiwi 10 5\nIAMAT second +1+1 1700000001\n");
          await waitFor(() => fake.requests.length === 1, 2000, "the WHATSAT reaches Google");

          // Another connection to the same server, and one to another server: answered well
          // before the hang ends (half of it: a loaded 2-core box took 351 ms once; blocked
          // behind the WHATSAT it would take the whole 1.5 s).
          for (const name of ["Hill", "Singleton"]) {
            const c = await TcpClient.connect(t.port(name));
            others.push(c);
            const t1 = performance.now();
            await c.send(`IAMAT other-${name} +1+1 ${TIME}\n`);
            await c.replies(1, 1000);
            const ms = performance.now() - t1;
            assert.ok(
              ms < HANG / 2,
              `IAMAT at ${name} took ${ms.toFixed(1)} ms behind a hung WHATSAT`,
            );
          }

          // Another client's WHATSAT (a different query) is answered while A's still hangs.
          fake.mode = "ok";
          const d = await TcpClient.connect(t.port("Hill"));
          others.push(d);
          const t2 = performance.now();
          const other = checkLayout(await ask(d, "WHATSAT kiwi 5 2", 1000), at);
          assert.deepEqual(other.status, "OK");
          assert.ok(performance.now() - t2 < HANG / 2, "other client's WHATSAT answered promptly");
          assert.deepEqual(
            a.received,
            at + "\n",
            "A's WHATSAT (and the IAMAT behind it) still pending",
          );

          const replies = await a.replies(3, HANG + 2000);
          const waited = performance.now() - t0;
          checkFailure(
            replies[1],
            at,
            "UNKNOWN_ERROR",
            `Places request timed out after ${HANG} ms`,
          );
          assert.match(replies[2], /^AT Hill [+-]\d+\.\d{9} second \+1\+1 1700000001\n$/);
          assert.ok(
            waited >= HANG - 50 && waited < HANG + 1000,
            `hung WHATSAT answered after ${waited} ms`,
          );
        } finally {
          await a.close();
          for (const c of others) await c.close();
        }
      },
    );
  });
});

Deno.test("identical concurrent WHATSATs (on any servers) share one Google request", async () => {
  await withFake(async (fake) => {
    await withHerd(
      { places: "new", apiKey: KEY, baseUrl: fake.origin, timeoutMs: 3000 },
      async (t, events) => {
        const first = await TcpClient.connect(t.port("Hill"));
        const at = await iamat(first, "kiwi");
        await first.close();
        await waitFor(
          () => [...t.herd.servers.values()].every((s) => s.store.get("kiwi") !== undefined),
          3000,
          "the record everywhere",
        );
        fake.delayMs = 300;
        const names = ["Hill", "Hill", "Jaquez", "Smith", "Campbell", "Singleton"];
        const replies = await Promise.all(
          names.map((n) => exchange(t.port(n), "WHATSAT kiwi 10 2\n", 3000)),
        );
        assert.deepEqual(fake.requests.length, 1, "one upstream request for six WHATSATs");
        for (const r of replies) assert.deepEqual(utf8(r), `${at}\n${NEW_TRANSLATED_2}\n\n`);
        const whatsats = events.filter((e) => e.includes('"kind":"whatsat"')).map((e) =>
          JSON.parse(e)
        );
        assert.deepEqual(whatsats.length, 6);
        assert.deepEqual(whatsats.filter((e) => e.coalesced).length, 5);
        // Not coalesced once the first has finished (no cache by default).
        assert.deepEqual(
          utf8(await exchange(t.port("Smith"), "WHATSAT kiwi 10 2\n")),
          `${at}\n${NEW_TRANSLATED_2}\n\n`,
        );
        assert.deepEqual(fake.requests.length, 2);
      },
    );
  });
});
