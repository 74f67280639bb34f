/**
 * The dashboard console's transport: one protocol command to one server over real TCP, exactly
 * as a client would send it, and the raw reply.
 *
 * @module
 */

import { errText } from "../servers/text.ts";
import { displayText } from "../servers/events.ts";
import { closeQuietly, writeAll } from "../servers/io.ts";
import { closeAfter, withTimeout } from "../servers/timeout.ts";

/** The connect outlived the deadline (told apart from a refused or failed connect). */
class TimedOut extends Error {}

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
  const timedOut = `timed out after ${timeoutMs} ms`;
  let conn: Deno.TcpConn;
  try {
    // The deadline covers the connect too: a server whose accept queue is full leaves it pending
    // (SYNs dropped) for minutes. A connection that completes after the deadline is closed.
    conn = await withTimeout(Deno.connect({ hostname: host, port, transport: "tcp" }), timeoutMs, {
      error: () => new TimedOut(),
      onLate: closeQuietly,
    });
  } catch (err) {
    const error = err instanceof TimedOut ? timedOut : `connect failed: ${errText(err)}`;
    return { reply: "", bytes: 0, ms: elapsed(), error };
  }
  // What is left of the deadline bounds the write and the read: the timer closes the connection.
  const timer = closeAfter(conn, Math.max(0, timeoutMs - (performance.now() - started)));
  let binary = "";
  let bytes = 0;
  try {
    await writeAll(conn, new TextEncoder().encode(line + "\n"));
    const buf = new Uint8Array(16 * 1024);
    while (true) {
      const n = await conn.read(buf);
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
    const error = timer.expired ? timedOut : "connection closed before a complete reply";
    return { reply: displayText(binary), bytes, ms: elapsed(), error };
  } catch (err) {
    const error = timer.expired ? timedOut : errText(err);
    return { reply: displayText(binary), bytes, ms: elapsed(), error };
  } finally {
    timer.clear();
    closeQuietly(conn);
  }
}
