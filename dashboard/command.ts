/**
 * The dashboard console's transport: one protocol command to one server over real TCP, exactly
 * as a client would send it, and the raw reply.
 *
 * @module
 */

import { errText } from "../servers/text.ts";
import { displayText } from "../servers/events.ts";
import { closeQuietly, writeAll } from "../servers/io.ts";

/** What a command produced. */
export interface CommandResult {
  /** The reply as display text (UTF-8 where valid), exactly as received otherwise. */
  reply: string;
  /** Bytes received. */
  bytes: number;
  /** Milliseconds from connect to the end of the reply. */
  ms: number;
  /** Set when the reply did not complete (timeout, closed early, too long). */
  error?: string;
}

/** Longest reply kept (a WHATSAT with 20 results is a few KiB; 1 MiB is generous). */
const MAX_REPLY = 1 << 20;

/** True when `buf` holds a complete reply to `line`. */
export function replyComplete(line: string, buf: string): boolean {
  const nl = buf.indexOf("\n");
  if (nl < 0) return false;
  // A WHATSAT answered with an AT line is followed by JSON and ends with a blank line.
  const verb = line.trim().split(/\s+/)[0];
  if (verb === "WHATSAT" && buf.startsWith("AT ")) return buf.includes("\n\n", nl);
  return true;
}

/**
 * Sends `line` + LF to `host:port` and reads one reply (bounded by `timeoutMs`). The line is sent
 * as UTF-8 (what a terminal sends). Never throws for network trouble: the result says.
 */
export async function sendCommand(
  host: string,
  port: number,
  line: string,
  timeoutMs = 10_000,
): Promise<CommandResult> {
  const started = performance.now();
  const elapsed = () => Math.round((performance.now() - started) * 10) / 10;
  let conn: Deno.TcpConn | undefined;
  let binary = "";
  let bytes = 0;
  let timedOut = false;
  let onTimeout: (() => void) | undefined;
  const timer = setTimeout(() => {
    timedOut = true;
    closeQuietly(conn);
    conn = undefined;
    onTimeout?.();
  }, timeoutMs);
  try {
    // The deadline covers the connect too: a server whose accept queue is full leaves it pending
    // (SYNs dropped) for minutes. A connection that completes after the deadline is closed.
    const dialing = Deno.connect({ hostname: host, port, transport: "tcp" });
    try {
      const dialed = await Promise.race([
        dialing,
        new Promise<undefined>((resolve) => (onTimeout = () => resolve(undefined))),
      ]);
      if (dialed === undefined || timedOut) {
        dialing.then(closeQuietly, () => {});
        return { reply: "", bytes: 0, ms: elapsed(), error: `timed out after ${timeoutMs} ms` };
      }
      conn = dialed;
    } catch (err) {
      return { reply: "", bytes: 0, ms: elapsed(), error: `connect failed: ${errText(err)}` };
    }
    await writeAll(conn, new TextEncoder().encode(line + "\n"));
    const buf = new Uint8Array(16 * 1024);
    while (true) {
      let n: number | null;
      try {
        n = conn ? await conn.read(buf) : null;
      } catch (err) {
        if (!conn) break; // closed by the timer
        return { reply: displayText(binary), bytes, ms: elapsed(), error: errText(err) };
      }
      if (n === null) break;
      bytes += n;
      for (let i = 0; i < n; i++) binary += String.fromCharCode(buf[i]);
      if (replyComplete(line, binary)) {
        return { reply: displayText(binary), bytes, ms: elapsed() };
      }
      if (bytes > MAX_REPLY) {
        return { reply: displayText(binary), bytes, ms: elapsed(), error: "reply too long" };
      }
    }
    const error = conn
      ? "connection closed before a complete reply"
      : `timed out after ${timeoutMs} ms`;
    return { reply: displayText(binary), bytes, ms: elapsed(), error };
  } catch (err) {
    const error = conn ? errText(err) : `timed out after ${timeoutMs} ms`;
    return { reply: displayText(binary), bytes, ms: elapsed(), error };
  } finally {
    clearTimeout(timer);
    closeQuietly(conn);
  }
}
