/**
 * One HTTP exchange with a Places upstream, reduced to what the providers need: either an HTTP
 * status with the body (parsed as JSON where it is JSON), or a short failure message. Never
 * rejects, never follows a redirect (a 3xx is a failure), enforces a deadline on the whole
 * exchange (headers and body), caps the body size and keeps the API key out of every message
 * (Deno's fetch errors quote the full URL, key included).
 *
 * @module
 */

import { errText } from "../text.ts";
import { jsonTooDeep, MAX_BODY_BYTES, MAX_BODY_DEPTH, shortMessage } from "./bodies.ts";

/** How the exchange ended. */
export type UpstreamOutcome =
  | {
    kind: "response";
    /** HTTP status code. */
    httpStatus: number;
    /** The parsed body, or undefined when it was not JSON. */
    json: unknown;
    /** False when the body was not JSON. */
    parsed: boolean;
  }
  | {
    kind: "failure";
    /**
     * "timeout" (deadline or caller's signal), "network" (refused, DNS, reset) or "rejected"
     * (a body over the size or nesting bound: the upstream's fault, reported as an error).
     */
    reason: "timeout" | "network" | "rejected";
    /** Short, secret-free text for `error_message`. */
    message: string;
  };

/** Options for {@linkcode fetchUpstream}. */
export interface UpstreamOptions {
  /** Deadline for the whole exchange, ms. */
  timeoutMs: number;
  /** Cancels the exchange early (answered as a timeout). */
  signal?: AbortSignal;
  /** Strings that must never appear in a message (the API key). */
  secrets: readonly string[];
  /** Body size cap in bytes (default `MAX_BODY_BYTES`, 1 MiB). */
  maxBytes?: number;
}

/** Marks our own deadline, to tell it apart from a caller's abort. */
class DeadlineError extends Error {
  override name = "TimeoutError";
}

/**
 * Performs one request within a deadline and reads the whole body.
 *
 * @example
 * ```ts
 * const apiKey = Deno.env.get("GOOGLE_PLACES_API_KEY")!; // redacted from any error text
 * const out = await fetchUpstream("https://example.test/x", { method: "GET" }, {
 *   timeoutMs: 5000,
 *   secrets: [apiKey],
 * });
 * if (out.kind === "response" && out.parsed) console.log(out.httpStatus, out.json);
 * ```
 */
export async function fetchUpstream(
  url: string,
  init: RequestInit,
  opts: UpstreamOptions,
): Promise<UpstreamOutcome> {
  const controller = new AbortController();
  const deadline = new DeadlineError(`timed out after ${opts.timeoutMs} ms`);
  const timer = setTimeout(() => controller.abort(deadline), opts.timeoutMs);
  const onAbort = () => controller.abort(opts.signal?.reason);
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener("abort", onAbort, { once: true });
  const host = hostOf(url);
  try {
    // Never follow a redirect: it would take the key (header or query) to wherever it points.
    const res = await fetch(url, { ...init, redirect: "manual", signal: controller.signal });
    if (res.type === "opaqueredirect" || (res.status >= 300 && res.status <= 399)) {
      await res.body?.cancel().catch(() => {});
      const status = res.status || "3xx";
      const text = `Places server ${host} answered HTTP ${status}: redirects are not followed`;
      return failure("network", text, opts.secrets);
    }
    const text = await readCapped(res, opts.maxBytes ?? MAX_BODY_BYTES);
    if (text === null) {
      return failure("rejected", `Places response from ${host} is too large`, opts.secrets);
    }
    // Bounded before parsing: everything after walks the body recursively.
    if (jsonTooDeep(text, MAX_BODY_DEPTH)) {
      return failure("rejected", `Places response from ${host} is nested too deep`, opts.secrets);
    }
    try {
      return { kind: "response", httpStatus: res.status, json: JSON.parse(text), parsed: true };
    } catch {
      return { kind: "response", httpStatus: res.status, json: undefined, parsed: false };
    }
  } catch (err) {
    if (controller.signal.aborted) {
      return failure("timeout", abortText(controller.signal.reason, deadline, opts), opts.secrets);
    }
    return failure("network", `Cannot reach ${host}: ${describeNetworkError(err)}`, opts.secrets);
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onAbort);
  }
}

function failure(
  reason: "timeout" | "network" | "rejected",
  message: string,
  secrets: readonly string[],
): UpstreamOutcome {
  return { kind: "failure", reason, message: shortMessage(message, secrets) };
}

/** Why the exchange was cut short: our deadline, a caller's deadline, or a caller's cancel. */
function abortText(reason: unknown, deadline: DeadlineError, opts: UpstreamOptions): string {
  if (reason === deadline) return `Places request timed out after ${opts.timeoutMs} ms`;
  if (reason instanceof Error && reason.name === "TimeoutError") {
    return reason.message.startsWith("Places") ? reason.message : "Places request timed out";
  }
  return "Places request cancelled";
}

/** Reads the body as text, or returns null (and cancels the stream) past `maxBytes`. */
async function readCapped(res: Response, maxBytes: number): Promise<string | null> {
  const declared = Number(res.headers.get("content-length") ?? "NaN");
  if (declared > maxBytes) {
    await res.body?.cancel().catch(() => {});
    return null;
  }
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        await reader.cancel().catch(() => {});
        return null;
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  return new TextDecoder().decode(all);
}

/** "host:port" of a URL, for messages (never the query, which may hold the key). */
function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return "the Places server";
  }
}

/**
 * The head of Deno's fetch error up to its cause, URL included, in both forms Deno has used:
 * `error sending request for url (URL): ...` and (2.9) `error sending request from LOCAL for URL
 * (HOST): ...`. The URL may hold a `)` of its own (a key's), so it is matched up to a space.
 */
const SENDING =
  /^.*?error sending request (?:from \S+ )?for (?:url \(\S+\)|\S+(?: \([^)\s]*\))?):\s*/s;

/** A short reason for a fetch failure, without the URL Deno puts in the message. */
function describeNetworkError(err: unknown): string {
  const text = errorText(err);
  if (/dns error|failed to lookup|name or service not known|nodename nor servname/i.test(text)) {
    return "host not found";
  }
  if (/connection refused/i.test(text)) return "connection refused";
  if (/connection reset|broken pipe/i.test(text)) return "connection reset";
  if (/certificate|tls|ssl/i.test(text)) return "TLS error";
  if (/are blocked/i.test(text)) return "port blocked";
  if (/connection closed before message completed|unexpected eof/i.test(text)) {
    return "connection closed before the answer";
  }
  // Unknown: keep the tail of the message, which names the cause, not the URL (whose query
  // holds the client's position, and for legacy the key).
  return text.replace(SENDING, "") || "network error";
}

function errorText(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e && depth < 4; depth++) {
    parts.push(errText(e));
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(": ");
}

/**
 * Google's own error text from an error body: `error.message` (New API) or `error_message`
 * (legacy), redacted; undefined when there is none.
 *
 * @example
 * ```ts
 * googleErrorMessage({ error: { code: 400, message: "API key not valid." } }, []);
 * // "API key not valid."
 * ```
 */
export function googleErrorMessage(json: unknown, secrets: readonly string[]): string | undefined {
  if (json === null || typeof json !== "object") return undefined;
  const obj = json as Record<string, unknown>;
  const nested = obj.error;
  const text = nested !== null && typeof nested === "object"
    ? (nested as Record<string, unknown>).message
    : obj.error_message;
  return typeof text === "string" && text.trim() ? shortMessage(text, secrets) : undefined;
}

/**
 * The legacy status for a non-2xx HTTP answer (the New API reports errors only this way).
 *
 * @example
 * ```ts
 * statusForHttp(429); // "OVER_QUERY_LIMIT"
 * ```
 */
export function statusForHttp(httpStatus: number): string {
  switch (httpStatus) {
    case 400:
      return "INVALID_REQUEST";
    case 401:
    case 403:
      return "REQUEST_DENIED";
    case 429:
      return "OVER_QUERY_LIMIT";
    default:
      return "UNKNOWN_ERROR";
  }
}
