/**
 * `deno task client TARGET [COMMAND]`: sends one command (or every line of stdin) to a server
 * named in the config, or to `host:port`, and prints the replies: byte for byte, or with
 * `--json` one JSON object per reply. Exit status: 0 when every reply is valid, 1 when any is
 * `? ...`, 2 on a usage or connection error (one line).
 *
 * It half-closes after sending, so the server answers everything pending and then closes:
 * the client needs no knowledge of where a reply ends to stop.
 *
 * @module
 */

import { loadConfig } from "../servers/config.ts";
import { binaryToBytes, bytesToBinary, utf8ToBinary } from "../servers/lines.ts";
import { isBlankLine } from "../servers/protocol.ts";
import { closeQuietly, writeAll } from "../servers/io.ts";
import { oneLine } from "../servers/text.ts";
import { hostPort } from "../servers/http_host.ts";
import { type HerdFlags, UsageError } from "./flags.ts";

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

/** The current time as an IAMAT time field: POSIX seconds with 9 fractional digits. */
function nowField(): string {
  const ns = Temporal.Now.instant().epochNanoseconds;
  return `${ns / 1_000_000_000n}.${(ns % 1_000_000_000n).toString().padStart(9, "0")}`;
}

/**
 * A command line (a binary string, without its LF) with an IAMAT's literal time `now` replaced by
 * the current time; any other line unchanged.
 *
 * @example
 * ```ts
 * withNow("IAMAT kiwi +34.068930-118.445127 now"); // "IAMAT kiwi +34.068930-118.445127 1763957556.123456789"
 * ```
 */
export function withNow(line: string): string {
  // The protocol's whitespace, not \s: in a binary string the UTF-8 of à, Р or Š holds 0xA0,
  // which \s takes for NBSP.
  const m =
    /^([ \t\r\f\v]*IAMAT[ \t\r\f\v]+[^ \t\r\n\f\v]+[ \t\r\f\v]+[^ \t\r\n\f\v]+[ \t\r\f\v]+)now([ \t\r\f\v]*)$/
      .exec(line);
  return m ? m[1] + nowField() + m[2] : line;
}

/** The first field of a command line: what kind of reply to expect. */
function verbOf(line: string): string | undefined {
  return /^[ \t\r\f\v]*([^ \t\r\n\f\v]+)/.exec(line)?.[1];
}

/** One reply as `--json` prints it. */
export function replyJson(reply: string): Record<string, unknown> {
  const text = new TextDecoder().decode(binaryToBytes(reply));
  const lf = text.indexOf("\n");
  const first = lf === -1 ? text : text.slice(0, lf);
  if (first.startsWith("? ")) return { ok: false, reply: first, invalid: first.slice(2) };
  // Fields as the server writes them, one space apart: an ID may hold NBSP or U+3000 (`\S`).
  const at = /^AT ([^ ]+) ([^ ]+) ([^ ]+) ([^ ]+) ([^ ]+)$/.exec(first);
  if (at === null) return { ok: false, reply: first };
  const out: Record<string, unknown> = {
    ok: true,
    reply: first,
    server: at[1],
    diff: at[2],
    client: at[3],
    location: at[4],
    time: at[5],
  };
  const body = lf === -1 ? "" : text.slice(lf + 1).trim();
  if (body !== "") {
    try {
      out.places = JSON.parse(body);
    } catch {
      out.placesText = body;
    }
  }
  return out;
}

/**
 * The longest reply kept while it arrives: far above the largest a server sends (a WHATSAT's
 * JSON comes from a Places body of at most 1 MiB).
 */
const MAX_REPLY_BYTES = 16 * 1024 * 1024;

/**
 * Splits the reply stream into replies: `? line`, `AT ...` alone (IAMAT), or `AT ...` followed
 * by a JSON body up to a blank line (WHATSAT). An AT line with nothing after it yet is a WHATSAT
 * reply still arriving only when the command it answers was a WHATSAT (`verbs`, in send order).
 */
class ReplySplitter {
  #buf = "";
  /**
   * While a JSON body is still arriving: what came after `#buf`, not yet joined to it. Joining
   * and searching the whole body at every read was quadratic: a 16 MiB reply took 2-4 s of CPU,
   * over 30 s at load 25 (cli.proc_test.ts's endless reply).
   */
  #more: string[] | undefined;
  #moreLength = 0;
  readonly verbs: string[] = [];

  /** Feeds bytes (as a binary string); returns the replies they complete. */
  feed(text: string): string[] {
    if (this.#more !== undefined) {
      // Only the new text, with the byte before it, can hold the body's end.
      const last = this.#more.length > 0 ? this.#more[this.#more.length - 1] : this.#buf;
      this.#more.push(text);
      this.#moreLength += text.length;
      if (!(last.slice(-1) + text).includes("\n\n")) {
        this.#checkLength(this.#buf.length + this.#moreLength);
        return [];
      }
      this.#buf += this.#more.join("");
      this.#more = undefined;
      this.#moreLength = 0;
    } else {
      this.#buf += text;
    }
    const out: string[] = [];
    for (;;) {
      const lf = this.#buf.indexOf("\n");
      if (lf === -1) break;
      let end = lf + 1;
      if (this.#buf.startsWith("AT ")) {
        const rest = this.#buf.slice(end);
        if (rest.startsWith("{")) {
          const close = this.#buf.indexOf("\n\n", end);
          if (close === -1) {
            this.#more = [];
            break;
          }
          end = close + 2;
        } else if (rest === "" && this.verbs[0] === "WHATSAT") {
          break;
        }
      }
      out.push(this.#buf.slice(0, end));
      this.#buf = this.#buf.slice(end);
      this.verbs.shift();
    }
    this.#checkLength(this.#buf.length);
    return out;
  }

  #checkLength(length: number): void {
    // A server streaming one endless reply kept every byte (the wait restarts with each one).
    if (length > MAX_REPLY_BYTES) {
      throw new Error(`A reply longer than ${MAX_REPLY_BYTES / 1024 / 1024} MiB`);
    }
  }

  /** Whatever is left at the end of the stream (a reply cut short). */
  end(): string[] {
    const rest = this.#buf + (this.#more?.join("") ?? "");
    this.#buf = "";
    this.#more = undefined;
    this.#moreLength = 0;
    return rest === "" ? [] : [rest];
  }
}

/**
 * Writing the replies to our stdout failed (its reader closed it, as `| head` does; or a full
 * disk under `>`): the connection was fine, and the message must not blame it.
 */
class StdoutFailed extends Error {}

/** A network error as a short phrase: "connection refused", not "Connection refused (os error 111)". */
function netError(err: unknown): string {
  const text = String((err as Error)?.message ?? err).replace(/ \(os error \d+\)$/, "");
  return text.charAt(0).toLowerCase() + text.slice(1);
}

/**
 * Runs the client; returns the exit status (0 all valid, 1 a `?` reply, 2 a connection error).
 *
 * @example
 * ```ts
 * import { parseFlags } from "./flags.ts";
 * Deno.exit(await runClient(parseFlags("client", ["Hill", "IAMAT kiwi +34.06-118.44 now"])));
 * ```
 */
export async function runClient(flags: HerdFlags): Promise<number> {
  const [target, ...rest] = flags.positionals;
  if (target === undefined) {
    throw new UsageError("client needs a TARGET (a server name or HOST:PORT)");
  }
  // Words joined with one space are not the command the user wrote (a tab or two spaces in it
  // would change silently): the command is one argument, quoted.
  if (rest.length > 1) {
    throw new UsageError(`client takes one COMMAND (quote it), got ${rest.length} arguments`);
  }
  // A blank line gets no reply: the client would send nothing and exit 0 as if it had worked.
  if (rest.length === 1 && rest[0].split("\n").every(isBlankLine)) {
    throw new UsageError("client's COMMAND is blank (a blank line gets no reply)");
  }
  const addr = await resolveTarget(target, flags.config);
  // A HOST:PORT target is named once; a server name with its address.
  const where = /:\d+$/.test(target) ? target : `${target} (${hostPort(addr.hostname, addr.port)})`;
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect(addr);
  } catch (err) {
    console.error(oneLine(`error: cannot connect to ${where}: ${netError(err)}`));
    return 2;
  }
  const splitter = new ReplySplitter();
  // The wait is bounded while the server owes something: a reply to a command sent, or (once
  // every command is sent) its close. A server that never answers or never closes ends the
  // client with exit 2 after --timeout-ms of silence; while the user is still typing with
  // nothing owed, there is no clock.
  let sentAll = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let timedOut = false;
  const rearm = () => {
    clearTimeout(timer);
    timer = undefined;
    if (flags.timeoutMs > 0 && (sentAll || splitter.verbs.length > 0)) {
      timer = setTimeout(() => {
        timedOut = true;
        closeQuietly(conn);
      }, flags.timeoutMs);
    }
  };
  const sendLine = async (line: string) => {
    const verb = verbOf(line);
    if (verb !== undefined) {
      splitter.verbs.push(verb);
      if (timer === undefined) rearm();
    }
    await writeAll(conn, binaryToBytes(withNow(line) + "\n"));
  };
  const send = async () => {
    if (rest.length > 0) {
      // argv is text: sent as its UTF-8 bytes, as a terminal's stdin sends it (char by char, a
      // code's low byte made 日 0xE5 and U+010A a line feed), its lines as stdin's.
      const lines = utf8ToBinary(rest[0]).split("\n");
      if (lines.at(-1) === "") lines.pop();
      for (const line of lines) await sendLine(line);
    } else {
      // Lines from stdin go as they come, so replies print while the user types.
      let pending = "";
      for await (const chunk of Deno.stdin.readable) {
        pending += bytesToBinary(chunk);
        let lf;
        while ((lf = pending.indexOf("\n")) !== -1) {
          await sendLine(pending.slice(0, lf));
          pending = pending.slice(lf + 1);
        }
      }
      if (pending !== "") await sendLine(pending);
    }
    await conn.closeWrite();
    sentAll = true;
    rearm();
  };
  let invalid = false;
  const print = async (replies: string[]) => {
    for (const r of replies) {
      if (r.startsWith("? ")) invalid = true;
      const text = flags.json ? JSON.stringify(replyJson(r)) + "\n" : r;
      try {
        await writeAll(Deno.stdout, flags.json ? new TextEncoder().encode(text) : binaryToBytes(r));
      } catch (err) {
        throw new StdoutFailed(
          err instanceof Deno.errors.BrokenPipe
            ? "stdout is closed (broken pipe)"
            : `stdout: ${netError(err)}`,
        );
      }
    }
  };
  const receive = async () => {
    for await (const chunk of conn.readable) {
      const replies = splitter.feed(bytesToBinary(chunk));
      rearm();
      await print(replies);
    }
    await print(splitter.end());
  };
  try {
    await Promise.all([send(), receive()]);
  } catch (err) {
    if (err instanceof StdoutFailed) {
      console.error(oneLine(`error: cannot write the replies: ${err.message}`));
      return 2;
    }
    if (!timedOut) {
      console.error(oneLine(`error: connection to ${where} failed: ${netError(err)}`));
      return 2;
    }
  } finally {
    clearTimeout(timer);
    closeQuietly(conn);
  }
  if (timedOut) {
    console.error(oneLine(`error: no reply from ${where} in ${flags.timeoutMs} ms (--timeout-ms)`));
    return 2;
  }
  return invalid ? 1 : 0;
}
