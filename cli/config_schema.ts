/**
 * docs/config.schema.json, generated from the config's zod schema (servers/config.ts) so the two
 * cannot drift: `deno task config-schema` rewrites it, and tests/config_schema.unit_test.ts fails when
 * the file is not what this prints.
 *
 * @module
 */

import { z } from "zod";
import { ConfigSchema } from "../servers/config.ts";

/** Where the schema is published. */
export const SCHEMA_PATH = new URL("../docs/config.schema.json", import.meta.url);

/**
 * The JSON Schema text (2020-12) of a herd config file.
 *
 * @example
 * ```ts
 * JSON.parse(configSchemaText()).additionalProperties; // false
 * ```
 */
export function configSchemaText(): string {
  return JSON.stringify(z.toJSONSchema(ConfigSchema, { io: "input" }), null, 2) + "\n";
}

if (import.meta.main) {
  await Deno.writeTextFile(SCHEMA_PATH, configSchemaText());
  console.log(`wrote ${SCHEMA_PATH.pathname}`);
}
