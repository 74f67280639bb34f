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
