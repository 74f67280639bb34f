/**
 * The published JSON Schema (docs/config.schema.json) and the config validator (zod, in
 * servers/config.ts) say the same thing: the file is what the zod schema generates, and an
 * independent JSON Schema validator (ajv) agrees with zod on a table of good and bad configs.
 */

// Test-only package: kept out of deno.json's runtime import map and deno.lock (tests/deno.lock).
// deno-lint-ignore no-import-prefix
import { Ajv2020 } from "npm:ajv@^8.17.1/dist/2020.js";
import assert from "node:assert/strict";
import { ConfigError, ConfigSchema, loadConfig, parseConfig } from "../servers/config.ts";
import { configSchemaText, SCHEMA_PATH } from "../cli/config_schema.ts";

const schemaText = await Deno.readTextFile(SCHEMA_PATH);
const validate = new Ajv2020({ strict: true, allErrors: true }).compile(JSON.parse(schemaText));

/** Configs of the right shape (the cross-field rules are parseConfig's; see below). */
const GOOD: unknown[] = [
  { servers: { A: { port: 1 } } },
  { servers: { A: { port: 65535, host: "::1", neighbors: [] } } },
  { servers: { "a.b_c-9": { port: 9000, neighbors: ["B"] }, B: { port: 9001 } } },
  { $schema: "./config.schema.json", servers: { A: { port: 1 } }, secret: "12345678" },
  { servers: { A: { port: 1 } }, secret: "a long secret, inner spaces are fine" },
  {
    servers: { A: { port: 1, linkPort: 2 } },
    tls: { ca: "ca.pem", cert: "{name}.pem", key: "{name}.key" },
  },
];

/** Configs of the wrong shape, each with the one line the CLI prints. */
const BAD: [unknown, RegExp][] = [
  [null, /must be an object with a "servers" object/],
  [[], /must be an object with a "servers" object/],
  [{}, /"servers" must be an object/],
  [{ servers: [] }, /"servers" must be an object/],
  [
    { servers: { A: { port: 1, neighbours: ["B"] } } },
    /unknown key "neighbours" \(did you mean "neighbors"\?\)/,
  ],
  [{ server: { A: { port: 1 } } }, /unknown key "server" \(did you mean "servers"\?\)/],
  [{ servers: { A: { prot: 1 } } }, /unknown key "prot" \(did you mean "port"\?\)/],
  [{ servers: { A: { port: 1 } }, secrets: "12345678" }, /unknown key "secrets"/],
  [{ servers: { A: {} } }, /server A: "port" is missing/],
  [{ servers: { A: { port: 0 } } }, /server A: bad port 0/],
  [{ servers: { A: { port: 70000 } } }, /server A: bad port 70000/],
  [{ servers: { A: { port: 1.5 } } }, /server A: bad port 1.5/],
  [{ servers: { A: { port: "1" } } }, /server A: bad port "1"/],
  [{ servers: { A: { port: 1, host: "" } } }, /server A: bad host ""/],
  [{ servers: { A: { port: 1, host: "a b" } } }, /server A: bad host "a b"/],
  [{ servers: { A: { port: 1, neighbors: "B" } } }, /server A: bad neighbors "B"/],
  [{ servers: { A: { port: 1, neighbors: [1] } } }, /server A: bad neighbors \[1\]/],
  [{ servers: { A: { port: 1, linkPort: 70000 } } }, /server A: bad linkPort 70000/],
  [{ servers: { "a b": { port: 1 } } }, /server name "a b" must be/],
  [{ servers: { ["x".repeat(65)]: { port: 1 } } }, /server name "x+" must be/],
  [{ servers: { A: "x" } }, /server A: must be an object/],
  [{ servers: { A: { port: 1 } }, secret: "short" }, /"secret" must be a string of at least 8/],
  [{ servers: { A: { port: 1 } }, secret: 12345678 }, /"secret" must be a string/],
  [{ servers: { A: { port: 1 } }, secret: " ".repeat(8) }, /"secret" must have at least 8 char/],
  [{ servers: { A: { port: 1 } }, secret: "a      b" }, /other than whitespace \(it has 2\)/],
  [{ servers: { A: { port: 1 } }, secret: "a-long-secret\n" }, /must not start or end with/],
  [
    { servers: { A: { port: 1 } }, tls: { ca: "x" } },
    /"tls" must be \{"ca": path, "cert": path, "key": path\}/,
  ],
  [{ servers: { A: { port: 1 } }, tls: { ca: "", cert: "c", key: "k" } }, /"tls" must be/],
  [{ servers: { A: { port: 1 } }, tls: { ca: "a", cert: "c", key: "k", x: 1 } }, /unknown key "x"/],
];

Deno.test("docs/config.schema.json is what the zod schema generates", () => {
  assert.deepEqual(schemaText, configSchemaText(), "run `deno task config-schema`");
});

Deno.test("the JSON Schema and the validator agree on good and bad configs", () => {
  for (const json of GOOD) {
    assert.ok(
      validate(json),
      `ajv refuses ${JSON.stringify(json)}: ${JSON.stringify(validate.errors)}`,
    );
    assert.ok(ConfigSchema.safeParse(json).success, `zod refuses ${JSON.stringify(json)}`);
    parseConfig(json);
  }
  for (const [json, re] of BAD) {
    assert.ok(!validate(json), `ajv accepts ${JSON.stringify(json)}`);
    assert.ok(!ConfigSchema.safeParse(json).success, `zod accepts ${JSON.stringify(json)}`);
    let err: unknown;
    try {
      parseConfig(json);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ConfigError, `parseConfig accepts ${JSON.stringify(json)}`);
    assert.deepEqual(err.message.split("\n").length, 1);
    assert.match(err.message, re);
  }
});

Deno.test("rules across fields are the validator's alone: the schema passes them, parseConfig does not", () => {
  const cases: [unknown, RegExp][] = [
    [{ servers: {} }, /no servers/],
    [{ servers: { A: { port: 9000 }, B: { port: 9000 } } }, /port 9000 is already used by A/],
    [{ servers: { A: { port: 9000, neighbors: ["Z"] } } }, /unknown neighbour Z/],
    [{ servers: { Ab: { port: 1, neighbors: ["Ac"] }, Ad: { port: 2 } } }, /did you mean "Ad"/],
    [{ servers: { A: { port: 9000, neighbors: ["A"] } } }, /cannot be its own neighbour/],
    [{ servers: { A: { port: 1 } }, tls: { ca: "a", cert: "c", key: "k" } }, /"linkPort" must/],
  ];
  for (const [json, re] of cases) {
    assert.ok(validate(json), `ajv refuses ${JSON.stringify(json)}`);
    let err: unknown;
    try {
      parseConfig(json);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ConfigError, JSON.stringify(json));
    assert.match(err.message, re);
  }
});

Deno.test("ports: one number on two addresses is fine; on one address, or beside every address, it clashes", () => {
  // Found by an adversarial review (adv16): the port number alone was compared, so a herd across
  // hosts, each server on 12000, could not be configured.
  const ok = [
    { A: { host: "10.0.0.1", port: 12000 }, B: { host: "10.0.0.2", port: 12000 } },
    { A: { host: "127.0.0.1", port: 13200 }, B: { host: "127.0.0.2", port: 13200 } },
    {
      A: { host: "10.0.0.1", port: 1, linkPort: 2 },
      B: { host: "10.0.0.2", port: 2, linkPort: 1 },
    },
  ];
  for (const servers of ok) {
    assert.equal(parseConfig({ servers }).servers.length, 2, JSON.stringify(servers));
  }
  const clash: [Record<string, unknown>, RegExp][] = [
    [{ A: { port: 9000 }, B: { host: "127.0.0.1", port: 9000 } }, /B: port 9000 .* by A/],
    [{ A: { host: "localhost", port: 9000 }, B: { port: 9000 } }, /B: port 9000 .* by A/],
    [{ A: { host: "0.0.0.0", port: 9000 }, B: { host: "10.0.0.2", port: 9000 } }, /by A/],
    [{ A: { host: "10.0.0.1", port: 9000 }, B: { host: "::", port: 9000 } }, /by A/],
    [{ A: { host: "::1", port: 9000 }, B: { host: "[::1]", port: 9000 } }, /by A/],
    [{ A: { port: 1, linkPort: 2 }, B: { port: 3, linkPort: 2 } }, /B: link port 2 .* by A/],
  ];
  for (const [servers, re] of clash) assert.throws(() => parseConfig({ servers }), re);
});

Deno.test("names that differ only in case are refused", () => {
  // TLS compares certificate names without case: A's certificate would pass as a's.
  assert.throws(
    () => parseConfig({ servers: { Hill: { port: 1 }, hill: { port: 2 } } }),
    /server hill: differs from Hill only in case/,
  );
});

Deno.test("the example configs name the schema, pass it and load", async () => {
  for (const name of ["config.example.json", "config.tls.example.json"]) {
    const url = new URL(`../docs/${name}`, import.meta.url);
    const json = JSON.parse(await Deno.readTextFile(url));
    assert.deepEqual(json.$schema, "./config.schema.json");
    assert.ok(validate(json), `${name}: ${JSON.stringify(validate.errors)}`);
    const herd = await loadConfig(url.pathname);
    assert.ok(herd.servers.length >= 2, name);
  }
});
