/**
 * A file that reaches the process's file-size limit (`ulimit -f`, systemd's `LimitFSIZE=`) costs
 * that write, never the process.
 *
 * The kernel answers a write past the limit with SIGXFSZ, whose default action ends the process at
 * once: no stop, no line on stderr, every client cut off (a log file that reached the limit ended
 * the server). Listened for, the signal is harmless and the write fails with EFBIG ("File too
 * large") instead, which the writers already handle as they handle a full disk: the logs count
 * the lines lost and report them (servers/log.ts), the record logs retry and `--sync-ack` IAMATs
 * get `?` meanwhile (servers/persist.ts). `tests/disk_faults.proc_test.ts`.
 *
 * @module
 */

let installed = false;

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
  if (installed || Deno.build.os === "windows") return;
  installed = true;
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
