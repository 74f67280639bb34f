/**
 * The config error, apart from config.ts so that modules a `server` loads before its client port
 * listens (tls.ts via peers.ts) need no zod (cli/early_listen.ts).
 *
 * @module
 */

/** A config problem; the message is one clear line for the command line. */
export class ConfigError extends Error {
  override name = "ConfigError";
}
