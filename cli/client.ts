/**
 * `deno task client TARGET [COMMAND]`: sends one command (or every line of stdin) to a server
 * named in the config, or to `host:port`, and prints the replies byte for byte.
 *
 * It half-closes after sending, so the server answers everything pending and then closes:
 * the client needs no knowledge of where a reply ends.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { loadConfig } from "../servers/config.ts";
import { UsageError, usageFromParseError } from "./flags.ts";

/** Help for the client. */
export const CLIENT_HELP = `Usage: deno task client [--config FILE] TARGET [COMMAND]
  TARGET   a server name from the config (e.g. Hill) or HOST:PORT
  COMMAND  one protocol command, e.g. 'IAMAT kiwi +34.06-118.44 1700000000.5';
           without it, every line of stdin is sent and each reply printed`;

/** Resolves a target to host and port. */
export async function resolveTarget(
  target: string,
  configPath?: string,
): Promise<{ hostname: string; port: number }> {
  const m = /^(.+):(\d{1,5})$/.exec(target);
  if (m && Number(m[2]) <= 65535) {
    return { hostname: m[1].replace(/^\[|\]$/g, ""), port: Number(m[2]) };
  }
  const config = await loadConfig(configPath);
  const s = config.servers.find((x) => x.name === target);
  if (s === undefined) {
    const names = config.servers.map((x) => x.name).join(", ");
    throw new UsageError(`unknown server ${target} (servers: ${names}; or give HOST:PORT)`);
  }
  return { hostname: s.host, port: s.port };
}

/**
 * Runs the client; returns the exit status.
 *
 * @example
 * ```ts
 * Deno.exit(await runClient(["Hill", "IAMAT kiwi +34.06-118.44 1700000000.5"]));
 * ```
 */
export async function runClient(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: { config: { type: "string" }, help: { type: "boolean", short: "h" } },
    });
  } catch (err) {
    throw usageFromParseError(err);
  }
  if (parsed.values.help) {
    console.log(CLIENT_HELP);
    return 0;
  }
  const [target, ...rest] = parsed.positionals;
  if (target === undefined) {
    throw new UsageError("client needs a TARGET (a server name or HOST:PORT)");
  }
  const addr = await resolveTarget(target, parsed.values.config);
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect(addr);
  } catch (err) {
    console.error(
      `cannot connect to ${target} at ${addr.hostname}:${addr.port}: ${(err as Error).message}`,
    );
    return 1;
  }
  const send = (async () => {
    if (rest.length > 0) {
      await conn.write(new TextEncoder().encode(rest.join(" ") + "\n"));
    } else {
      // Lines from stdin go as they come, so replies print while the user types.
      for await (const chunk of Deno.stdin.readable) {
        let off = 0;
        while (off < chunk.length) off += await conn.write(chunk.subarray(off));
      }
    }
    await conn.closeWrite();
  })();
  const receive = conn.readable.pipeTo(Deno.stdout.writable, { preventClose: true });
  await Promise.all([send, receive]);
  return 0;
}
