/**
 * The last resort of a herd process: an exception nothing caught (a timer's or an event
 * listener's callback that threw, a promise rejected with nobody waiting for it) costs one line
 * on stderr, not the process.
 *
 * Every path the herd knows of catches its own errors (docs/reliability.md, "Nothing unhandled");
 * this is for the bug nobody knows of yet. Deno's default for one is to end the process with a
 * stack trace: five servers in one `start` process, every client connection and every record not
 * yet on disk gone, for a bug that cost one connection or one timer tick. Here it is one line
 * instead, with "Uncaught" in it, so the tests that fail on a server's uncaught error
 * (`tests/_helpers/procs.ts`) still fail on it. The line says it was a bug, quotes the error's
 * message (one line, clipped, the process's secrets and any `key=` value redacted) and where it
 * was thrown; beyond {@linkcode BURST} lines it says one a minute with the count of the others,
 * so a bug that fires on every command cannot flood stderr (whose writes block when nobody
 * drains it).
 *
 * It hides nothing: after any such error `/healthz` is unhealthy (its reasons say how many), so a
 * monitor restarts a process a bug may have left in an unknown state (a restart recovers the
 * records from disk and the neighbours); a record log that cannot write reports that itself.
 *
 * A rejection of main.ts's own start-up is not one of these: main.ts catches it and exits.
 *
 * @module
 */

import { errText, oneLine } from "../servers/text.ts";

/** Lines said at once; beyond them one per {@linkcode QUIET_MS}, with the count of the others. */
const BURST = 10;
const QUIET_MS = 60_000;
/** The longest message quoted. */
const MAX_MESSAGE = 300;
/** Where secrets come from: never printed, wherever they appear in a message. */
const SECRET_VARIABLES = ["HERD_SECRET", "GOOGLE_PLACES_API_KEY", "HERD_DASHBOARD_TOKEN"];

let installed = false;
/** Uncaught exceptions and rejections seen so far, said or not. */
let seen = 0;

/**
 * How many uncaught exceptions and rejections the last resort has survived in this process
 * (`/healthz` is unhealthy after any: servers/ops/app.ts).
 *
 * @example
 * ```ts
 * uncaughtSoFar(); // 0
 * ```
 */
export function uncaughtSoFar(): number {
  return seen;
}

/**
 * Installs the last resort for the process (once; later calls do nothing). `print` receives each
 * line (default: stderr).
 *
 * @example
 * ```ts
 * keepRunningOnUncaught();
 * setTimeout(() => {
 *   throw new Error("a bug"); // one line on stderr; the process goes on
 * }, 0);
 * ```
 */
export function keepRunningOnUncaught(print: (line: string) => void = console.error): void {
  if (installed) return;
  installed = true;
  let said = 0;
  let untold = 0;
  let quietUntil = 0;
  const report = (kind: string, error: unknown) => {
    seen++;
    const now = performance.now();
    if (said >= BURST && now < quietUntil) {
      untold++;
      return;
    }
    said++;
    if (said >= BURST) quietUntil = now + QUIET_MS;
    const others = untold > 0 ? ` (${untold} more since the last one not shown)` : "";
    untold = 0;
    try {
      print(
        `${kind} ${describe(error)}: a bug, caught at the last resort; the process goes on` +
          others,
      );
    } catch {
      // stderr itself failed: nothing more to do
    }
  };
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    report("Uncaught (in promise)", e.reason);
  });
  globalThis.addEventListener("error", (e) => {
    e.preventDefault();
    report("Uncaught", e.error ?? e.message);
  });
}

/**
 * An uncaught value as one line: `Name: message [at where]`, the message's first line only,
 * clipped, secrets redacted.
 *
 * @example
 * ```ts
 * describe(new TypeError("x is undefined")); // "TypeError: x is undefined [at file:///...:3:9]"
 * ```
 */
export function describe(error: unknown, secrets: readonly string[] = envSecrets()): string {
  let name = "";
  let where = "";
  // Never throws, whatever was thrown (a value may not even convert to text).
  const message = errText(error);
  if (error instanceof Error) {
    name = error.name;
    // The first frame in the herd's own code: a file, line and column (no message text).
    const frame = /\n\s+at (?:.*?\()?(file:[^\s)]+)\)?/.exec(error.stack ?? "");
    if (frame) where = ` [at ${frame[1]}]`;
  }
  let text = message.split("\n")[0];
  for (const s of secrets) if (s.length >= 8) text = text.replaceAll(s, "[redacted]");
  // A Places key in a URL (the legacy API's `key=`), and a generated secret or token (hex).
  text = text.replace(/([?&]key=)[^&\s"']+/gi, "$1[redacted]").replace(
    /[0-9a-f]{32,}/gi,
    "[redacted]",
  );
  if (text.length > MAX_MESSAGE) text = `${text.slice(0, MAX_MESSAGE)}...`;
  return oneLine(`${name ? `${name}: ` : ""}${text}${where}`);
}

/** The secrets this process was given in its environment (those it may read). */
function envSecrets(): string[] {
  const out: string[] = [];
  for (const name of SECRET_VARIABLES) {
    // Only a granted one (asking would prompt on a terminal): one not granted was never read.
    try {
      if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") continue;
      const v = Deno.env.get(name);
      if (v !== undefined && v !== "") out.push(v);
    } catch {
      // not readable: then it cannot have come from there either
    }
  }
  return out;
}
