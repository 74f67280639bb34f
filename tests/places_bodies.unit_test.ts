/** servers/places/bodies.ts: what a reply body keeps of the secrets it is redacted for. */

import assert from "node:assert/strict";
import { redact, redactDeep } from "../servers/places/bodies.ts";

Deno.test("redact: a short test key is redacted where it stands alone, never inside a word", () => {
  // A legacy answer, as a fake upstream sends it to a herd run with GOOGLE_PLACES_API_KEY=K.
  const body = {
    status: "OK",
    next_page_token: "AKtoken-K-x",
    results: [{ name: "OK Corral", vicinity: "Key K, or K? (K) k", types: ["KK"] }],
    error_message: "The key K=bad; key=K&x=1",
  };
  redactDeep(body, ["K"]);
  assert.deepEqual(body.status, "OK");
  assert.deepEqual(body.next_page_token, "AKtoken-K-x", "inside a token: not a key");
  assert.deepEqual(body.results[0].name, "OK Corral");
  assert.deepEqual(body.results[0].vicinity, "Key REDACTED, or REDACTED? (REDACTED) k");
  assert.deepEqual(body.results[0].types, ["KK"]);
  assert.deepEqual(body.error_message, "The key REDACTED=bad; key=REDACTED&x=1");
});

Deno.test("redact: a real key is redacted wherever it appears, raw or encoded", () => {
  const key = "AIzaSyFake+Key/0123456789abcdefghijkl";
  const encoded = encodeURIComponent(key);
  assert.deepEqual(redact(`tok${key}en`, [key]), "tokREDACTEDen");
  assert.deepEqual(redact(`a${encoded.toLowerCase()}b`, [key]), "aREDACTEDb");
  assert.deepEqual(redact(`GET /x?key=${encoded}&a=1`, [key]), "GET /x?key=REDACTED&a=1");
  // A short secret with characters a URL encodes: as a word, in either form.
  assert.deepEqual(
    redact("s p and s%20p and as%20pb", ["s p"]),
    "REDACTED and REDACTED and as%20pb",
  );
});
