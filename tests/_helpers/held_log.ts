/**
 * A start held at its log file: the test makes the log a FIFO (`mkfifo`), so the server's open
 * of it waits for a reader, and the start stops there (after the early listen). Opening it is
 * what lets the start go on; its lines are then read and dropped, so the server's writes never
 * block.
 *
 * @module
 */

/** The reading end of a held log; `close()` ends the reading. */
export interface ReleasedLog {
  close(): Promise<void>;
}

/** Lets a start held at the FIFO `path` go on, and drains what the server writes there. */
export async function releaseHeldLog(path: string): Promise<ReleasedLog> {
  const reader = await Deno.open(path, { read: true });
  const draining = (async () => {
    const buf = new Uint8Array(65536);
    while ((await reader.read(buf).catch(() => null)) !== null) {
      // the server's log lines
    }
  })();
  return {
    async close() {
      try {
        reader.close();
      } catch {
        // closed already
      }
      await draining;
    },
  };
}
