/**
 * Reading a config file with a bound: a path that names no herd config (`/dev/zero`, a runaway
 * FIFO, a huge log) must end in one line and exit 2, not fill the memory. No zod here: the
 * early listener (cli/early_listen.ts) reads the config before the rest has loaded.
 *
 * @module
 */

import { ConfigError } from "./config_error.ts";

/** The largest config file read: a herd's config is a few KiB (1,000 servers: ~150 KiB). */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/**
 * Longest the whole read may take: a FIFO nobody writes to blocks its open for ever, and one
 * that never ends its input blocks a read (`--config <(cmd)` is a FIFO too, and is answered in
 * far less).
 */
export const CONFIG_READ_MS = 5_000;

/**
 * The text of the config file at `path`, decoded as UTF-8.
 *
 * @throws {ConfigError} when the file holds more than {@linkcode MAX_CONFIG_BYTES} bytes, or
 * is not read whole within {@linkcode CONFIG_READ_MS}.
 * @throws the open's or read's own error (e.g. `Deno.errors.NotFound`) otherwise.
 *
 * @example
 * ```ts
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, '{"servers": []}');
 * await readConfigText(path); // '{"servers": []}'
 * ```
 */
export async function readConfigText(path: string): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new ConfigError(
            `config ${path}: nothing to read in ${CONFIG_READ_MS / 1000} s ` +
              `(a FIFO nobody writes to?)`,
          ),
        ),
      CONFIG_READ_MS,
    );
  });
  try {
    // The open or read left behind on a timeout stays blocked; the process exits 2 anyway.
    return await Promise.race([readAll(path), late]);
  } finally {
    clearTimeout(timer);
  }
}

async function readAll(path: string): Promise<string> {
  using file = await Deno.open(path);
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  let size = 0;
  for (;;) {
    const buf = new Uint8Array(64 * 1024);
    const n = await file.read(buf);
    if (n === null) break;
    size += n;
    if (size > MAX_CONFIG_BYTES) {
      throw new ConfigError(
        `config ${path} is larger than ${MAX_CONFIG_BYTES / 1024 / 1024} MiB: not a herd config`,
      );
    }
    chunks.push(buf.subarray(0, n));
  }
  return await new Blob(chunks).text();
}
