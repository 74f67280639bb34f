/**
 * Signals whose default action would end a herd process where nothing asked it to stop.
 *
 * - **SIGXFSZ**: a write past the process's file-size limit (`ulimit -f`, systemd's
 *   `LimitFSIZE=`) raises it, and its default action ends the process at once: no stop, no line
 *   on stderr, every client cut off (a log file that reached the limit ended the server).
 *   Listened for, the signal is harmless and the write fails with EFBIG ("File too large")
 *   instead, which the writers handle as they handle a full disk: the logs count the lines lost
 *   and report them (servers/log.ts), the record logs retry and `--sync-ack` IAMATs get `?`
 *   meanwhile (servers/persist.ts). `tests/disk_faults.proc_test.ts`.
 * - **SIGHUP** (logrotate's "reopen your logs"): a `server` takes connections on its client port
 *   seconds before its logs are open (cli/early_listen.ts), and a SIGHUP then found no listener
 *   and ended it. It is listened for from the start; one that comes before the logs are open is
 *   held and reopens them once they are (a rotation may have renamed them meanwhile).
 *   `tests/cli.proc_test.ts`.
 *
 * Nothing can be done for a signal that comes before main.ts runs (Deno loading the modules).
 *
 * @module
 */

let fileSizeGuarded = false;

/**
 * Makes SIGXFSZ a one-line note on stderr (the first time) instead of the end of the process. A
 * no-op where the signal does not exist (Windows), or when called again.
 *
 * @example
 * ```ts
 * surviveFileSizeLimit(); // before the process opens its logs
 * ```
 */
export function surviveFileSizeLimit(): void {
  if (fileSizeGuarded || Deno.build.os === "windows") return;
  fileSizeGuarded = true;
  let noted = false;
  Deno.addSignalListener("SIGXFSZ", () => {
    if (noted) return;
    noted = true;
    console.error(
      "a file reached this process's file-size limit (ulimit -f): writes past it fail and are " +
        "reported",
    );
  });
}

let hangupListening = false;
let onHangupFn: (() => void) | undefined;
let hangupHeld = false;

/**
 * Listens for SIGHUP from now on: what {@linkcode onHangup} installs runs on it; until then (and
 * after it is taken away) one is held for the next. A no-op on Windows (no SIGHUP), or when
 * called again.
 *
 * @example
 * ```ts
 * listenForHangups(); // first thing: the client port may open before the logs do
 * ```
 */
export function listenForHangups(): void {
  if (hangupListening || Deno.build.os === "windows") return;
  hangupListening = true;
  Deno.addSignalListener("SIGHUP", () => {
    if (onHangupFn === undefined) {
      hangupHeld = true;
      return;
    }
    runHangup(onHangupFn);
  });
}

/**
 * What SIGHUP does from now on (undefined: nothing, held); runs `fn` at once if one came while
 * there was none. Listens for SIGHUP if nothing did yet.
 *
 * @example
 * ```ts
 * declare const logs: { reopen(): void };
 * onHangup(() => logs.reopen()); // once the logs are open
 * onHangup(undefined); // before they close
 * ```
 */
export function onHangup(fn: (() => void) | undefined): void {
  listenForHangups();
  onHangupFn = fn;
  if (fn !== undefined && hangupHeld) {
    hangupHeld = false;
    runHangup(fn);
  }
}

/** A signal listener that throws ends the process: a failed reopen is one line instead. */
function runHangup(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    console.error(`SIGHUP: ${(err as Error)?.message ?? err}`.split("\n")[0].slice(0, 300));
  }
}
