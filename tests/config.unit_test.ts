/**
 * servers/config.ts beyond its schema (tests/config_schema.unit_test.ts): a key given twice in
 * the file is refused by name, wherever it is, and only a real repetition is.
 */

import assert from "node:assert/strict";
import { ConfigError, duplicateKey, loadConfig } from "../servers/config.ts";

Deno.test("config: the first key an object holds twice, by its path; keys repeated across objects are not", () => {
  const cases: [string, string | undefined][] = [
    ['{"servers": {"A": {"port": 1}, "A": {"port": 2}}}', "servers.A"],
    ['{"servers": {"A": {"port": 1, "host": "x", "port": 2}}}', "servers.A.port"],
    ['{"servers": {}, "servers": {"A": {"port": 1}}}', "servers"],
    [
      '{"tls": {"ca": "a"}, "servers": {"A": {"neighbors": [], "neighbors": ["B"]}}}',
      "servers.A.neighbors",
    ],
    // The same key in different objects, in arrays, escaped differently but the same text after
    // parsing ("\u0041" is "A").
    ['{"servers": {"A": {"port": 1}, "B": {"port": 2}}}', undefined],
    ['[{"a": 1}, {"a": 2}]', undefined],
    ['{"x": [{"a": 1, "a": 2}]}', "x.0.a"],
    ['{"servers": {"A": {"port": 1}, "\\u0041": {"port": 2}}}', "servers.A"],
    ["{}", undefined],
  ];
  for (const [text, want] of cases) assert.equal(duplicateKey(text), want, text);
});

Deno.test("config: loadConfig refuses a file with a server written twice, naming it", async () => {
  const path = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(
      path,
      '{"servers": {"A": {"port": 9000, "neighbors": ["B"]}, "B": {"port": 9001, "neighbors": ["A"]}, "A": {"port": 9002}}}',
    );
    await assert.rejects(
      () => loadConfig(path),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.message === `config ${path}: servers.A is given twice: give it once`,
    );
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("config: a deeply nested file (valid JSON) is a clear ConfigError, not a stack overflow", async () => {
  // JSON.parse takes 20,000 levels; jsonc-parser's visitor (duplicateKey) recursed once per level
  // and threw RangeError out of loadConfig: start/server died with an uncaught stack trace, exit 1.
  const path = await Deno.makeTempFile({ suffix: ".json" });
  try {
    const depth = 20_000;
    await Deno.writeTextFile(path, `{"servers": ${"[".repeat(depth)}${"]".repeat(depth)}}`);
    await assert.rejects(() => loadConfig(path), (err: unknown) => err instanceof ConfigError);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("config: a file that is not JSON is reported by line and column, never quoting it", async () => {
  // V8's JSON.parse message for an unexpected token quotes ~10 bytes around it: a secret whose
  // quotes were forgotten was printed in part (found by an adversarial review).
  const secret = "Zq7Wx9Kv3Lp5Rt8Yh2Mn";
  const cases: [string, RegExp][] = [
    [`{"secret": ${secret}, "servers": {}}`, /: unexpected character at line 1, column 12$/],
    [
      `{\n  "servers": {},\n  "secret": ${secret}\n}`,
      /: unexpected character at line 3, column 13$/,
    ],
    [`{"secret": "${secret}",}`, /line 1, column \d+/],
    [`{"secret": "${secret}"} ${secret}`, /: unexpected character at line 1, column 36$/],
    [`{"secret": "${secret}`, /: unexpected end at line 1, column 33$/],
    [`{"secret": tru}`, /: unexpected character at line 1, column 15$/],
  ];
  const dir = await Deno.makeTempDir();
  try {
    for (const [text, where] of cases) {
      const path = `${dir}/herd.json`;
      await Deno.writeTextFile(path, text);
      const err = await loadConfig(path).then(() => undefined, (e) => e);
      assert.ok(err instanceof ConfigError, `${text}: ${err}`);
      assert.match(err.message, /is not valid JSON/);
      assert.match(err.message, where, text);
      for (let i = 0; i + 4 <= secret.length; i++) {
        assert.ok(!err.message.includes(secret.slice(i, i + 4)), `quoted: ${err.message}`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
