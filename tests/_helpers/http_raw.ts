/**
 * HTTP/1.1 over a raw TCP socket, for tests that must send exactly the request line and headers
 * they mean: a path no client library normalises (like `curl --path-as-is`), a forged or missing
 * `Host`. Every read is bounded.
 *
 * @module
 */

/** A response as read off the socket. */
export interface RawResponse {
  status: number;
  /** Header names lower-cased. */
  headers: Record<string, string>;
  /** The body bytes as a binary string (empty for an event stream, which never ends). */
  body: string;
}

/** Options for {@linkcode rawRequest}. */
export interface RawRequestOptions {
  method?: string;
  /** The `Host` header; `null` sends none. Default `127.0.0.1:<port>`. */
  host?: string | null;
  /** Extra header lines (`Name: value`). */
  headers?: string[];
  /** A body (binary string); sets Content-Length. */
  body?: string;
  /** Bound on the whole exchange. Default 15 s (a loaded machine). */
  ms?: number;
}

/**
 * Sends one request (`Connection: close`) to 127.0.0.1:port with `target` as the request target,
 * byte for byte, and reads the answer until the server closes, or just its head when it is an
 * event stream.
 */
export async function rawRequest(
  port: number,
  target: string,
  opts: RawRequestOptions = {},
): Promise<RawResponse> {
  const host = opts.host === undefined ? `127.0.0.1:${port}` : opts.host;
  const lines = [
    `${opts.method ?? "GET"} ${target} HTTP/1.1`,
    ...(host === null ? [] : [`Host: ${host}`]),
    ...(opts.headers ?? []),
    ...(opts.body === undefined ? [] : [`Content-Length: ${opts.body.length}`]),
    "Connection: close",
  ];
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), opts.ms ?? 15_000);
  let text = "";
  try {
    const req = Uint8Array.from(
      lines.join("\r\n") + "\r\n\r\n" + (opts.body ?? ""),
      (c) => c.charCodeAt(0),
    );
    let off = 0;
    while (off < req.length) off += await conn.write(req.subarray(off));
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      for (let i = 0; i < n; i++) text += String.fromCharCode(buf[i]);
      const head = text.indexOf("\r\n\r\n");
      if (head >= 0 && /content-type:\s*text\/event-stream/i.test(text.slice(0, head))) break;
    }
  } catch (err) {
    if (!text) throw new Error(`${target}: no answer within the bound (${err})`);
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // closed by the timer
    }
  }
  const head = text.indexOf("\r\n\r\n");
  if (head < 0) throw new Error(`${target}: incomplete answer ${JSON.stringify(text)}`);
  const [statusLine, ...headerLines] = text.slice(0, head).split("\r\n");
  const headers: Record<string, string> = {};
  for (const l of headerLines) {
    const c = l.indexOf(":");
    headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
  }
  const eventStream = /^text\/event-stream/.test(headers["content-type"] ?? "");
  let body = eventStream ? "" : text.slice(head + 4);
  if (/chunked/i.test(headers["transfer-encoding"] ?? "")) body = dechunk(body);
  return { status: Number(statusLine.split(" ")[1]), headers, body };
}

/** The payload of a chunked body (what arrived of it). */
function dechunk(raw: string): string {
  let out = "";
  let at = 0;
  while (at < raw.length) {
    const lf = raw.indexOf("\r\n", at);
    if (lf < 0) break;
    const size = parseInt(raw.slice(at, lf), 16);
    if (!(size > 0)) break;
    out += raw.slice(lf + 2, lf + 2 + size);
    at = lf + 2 + size + 2;
  }
  return out;
}
