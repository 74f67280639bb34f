/**
 * The seed's herd: the default config and the one topology code, demo, benchmarks and tests
 * share. Apart from config.ts (which re-exports it) so that reading it costs no zod: `server NAME`
 * opens its port from it before loading the rest (cli/early_listen.ts).
 *
 * @module
 */

/**
 * The seed's herd (docs/protocol.md), the one topology the code, the demo, the benchmarks and
 * the tests share: its five servers in port order...
 */
export const SEED_NAMES: readonly string[] = ["Hill", "Jaquez", "Smith", "Campbell", "Singleton"];

/** ...and its links (undirected). */
export const SEED_LINKS: readonly (readonly [string, string])[] = [
  ["Hill", "Jaquez"],
  ["Hill", "Smith"],
  ["Singleton", "Jaquez"],
  ["Singleton", "Smith"],
  ["Singleton", "Campbell"],
  ["Smith", "Campbell"],
];

/**
 * Each seed server's neighbours (both ends of every link).
 *
 * @example
 * ```ts
 * seedNeighbors().Hill; // ["Jaquez", "Smith"]
 * ```
 */
export function seedNeighbors(): Record<string, string[]> {
  return Object.fromEntries(
    SEED_NAMES.map((n) => [n, SEED_LINKS.flatMap(([a, b]) => a === n ? [b] : b === n ? [a] : [])]),
  );
}

/** A seed server's entry in a config file. */
export interface SeedServerJson {
  port: number;
  host?: string;
  neighbors: string[];
}

/**
 * The seed herd's config JSON, its servers on `ports` (in {@linkcode SEED_NAMES} order).
 *
 * @example
 * ```ts
 * seedConfigJson([9000, 9001, 9002, 9003, 9004]).servers.Smith.port; // 9002
 * ```
 */
export function seedConfigJson(
  ports: readonly number[] = SEED_NAMES.map((_, i) => 12000 + i),
  host?: string,
): { servers: Record<string, SeedServerJson> } {
  const neighbors = seedNeighbors();
  const servers: Record<string, SeedServerJson> = {};
  SEED_NAMES.forEach((name, i) => {
    servers[name] = {
      port: ports[i],
      ...(host === undefined ? {} : { host }),
      neighbors: neighbors[name],
    };
  });
  return { servers };
}

/** The seed's herd: five servers on ports 12000–12004. */
export const DEFAULT_CONFIG_JSON: { servers: Record<string, SeedServerJson> } = seedConfigJson();
