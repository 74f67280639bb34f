/**
 * The Places providers never follow a redirect: the fake Google answers 301/302/307/308 pointing
 * at a second loopback server that records anything it gets. Over real TCP (IAMAT, WHATSAT to an
 * in-process herd), for both the `new` and the `legacy` API, the second server must see no
 * request (so no key, which `new` sends in a header and `legacy` in the query), and the reply is
 * the documented upstream-error layout.
 */

import assert from "node:assert/strict";
import { startFakeGoogle } from "./_helpers/fake_google.ts";
import { startSeedHerd, TcpClient } from "./_helpers/net.ts";
import { createPlacesProvider } from "../servers/places/select.ts";
import { formatLegacyJson } from "../servers/places/legacy_json.ts";
import { openLogs } from "../servers/log.ts";

const KEY = "AIzaFAKE-redirect-KEY_5d0c11b7e2";
const UCLA = "+34.068930-118.445127";
const TIME = "1700000000.123456789";

/** A loopback server that records every request it receives (and answers 200 `{}`). */
function startRecorder() {
  const seen: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const headers = [...req.headers].map(([k, v]) => `${k}: ${v}`).join("\n");
    seen.push(`${req.method} ${req.url}\n${headers}\n${await req.text()}`);
    return Response.json({});
  });
  return { seen, origin: `http://127.0.0.1:${server.addr.port}`, close: () => server.shutdown() };
}

for (const places of ["new", "legacy"] as const) {
  Deno.test(`places ${places}: a 3xx is an upstream error; the key never leaves the origin`, async () => {
    const fake = startFakeGoogle(KEY);
    const elsewhere = startRecorder();
    fake.mode = "redirect";
    fake.redirectTo = elsewhere.origin;
    const t = await startSeedHerd({
      places: createPlacesProvider({ places, apiKey: KEY, baseUrl: fake.origin, timeoutMs: 5000 }),
    });
    const events: string[] = [];
    const off = t.herd.bus.subscribe((e) => events.push(JSON.stringify(e)));
    const dir = await Deno.makeTempDir({ prefix: "places_redirect_" });
    const logs = await openLogs(t.herd.bus, dir, [...t.herd.servers.keys()]);
    const c = await TcpClient.connect(t.port("Hill"));
    try {
      await c.send(`IAMAT kiwi ${UCLA} ${TIME}\n`);
      const [at] = await c.replies(1);
      const atLine = at.slice(0, -1);
      for (const [i, status] of [301, 302, 307, 308].entries()) {
        fake.redirectStatus = status;
        await c.send(`WHATSAT kiwi 10 ${i + 1}\n`);
        const reply = (await c.replies(2 + i, 10_000))[1 + i];
        const host = new URL(fake.origin).host;
        const expected = `${atLine}\n${
          formatLegacyJson({
            error_message:
              `Places server ${host} answered HTTP ${status}: redirects are not followed`,
            html_attributions: [],
            results: [],
            status: "UNKNOWN_ERROR",
          })
        }\n\n`;
        assert.deepEqual(reply, expected, `HTTP ${status}`);
      }
      assert.deepEqual(fake.requests.length, 4, "each WHATSAT asked the configured origin once");
      assert.deepEqual(elsewhere.seen, [], "the redirect target got no request");
    } finally {
      await c.close();
      await t.close();
      off();
      await logs.close();
      await fake.close();
      await elsewhere.close();
    }
    let logText = "";
    for await (const e of Deno.readDir(dir)) logText += await Deno.readTextFile(`${dir}/${e.name}`);
    await Deno.remove(dir, { recursive: true });
    assert.ok(logText.includes("redirects are not followed"), "the PLACES log line says why");
    for (const text of [logText, ...events]) {
      assert.ok(!text.includes(KEY), "the key is in no log line or event");
    }
  });
}
