/**
 * `fdatasync` for the record logs of this process, asked of one Worker thread.
 *
 * Each group commit ends in an `fdatasync` (servers/persist.ts). Done as `FsFile.syncData()` on
 * the event loop's thread, each was an async op that dup'ed and closed the descriptor and woke a
 * thread of the runtime's blocking pool; on a busy two-core machine the woken thread took the
 * CPU from the herd's one JavaScript thread (9–13% of that thread's time in the profiles, and
 * the largest item in its longest stretches of work: BENCHMARKS.md, "fourth pass"). Five servers
 * committing 100 times a second each made 500 such wake-ups a second. Here, while more than one
 * log is open in the process, the syncs asked for in one turn of the event loop go to the sync
 * thread in one message; that thread runs them in parallel (its own blocking pool does the
 * waking) and answers in one message. A process with one log (a `server` process) syncs as
 * before, on its own descriptor: with nothing to batch, the thread only added a hop (paired,
 * five `server` processes: more CPU per IAMAT in 5 of 6 rounds).
 *
 * The thread keeps its own descriptor per file, opened by path and opened again when the path
 * names another file (a compaction renamed a new log over it). `fdatasync` through any
 * descriptor of a file writes back that file's data and size, whichever descriptor wrote them;
 * a write-back error is reported to the first `fdatasync` after it even on a descriptor opened
 * later (Linux reports an error no descriptor has seen yet).
 *
 * @module
 */

import { setImmediate } from "node:timers";

/** One log's sync request of this turn. */
interface Request {
  path: string;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** What the sync thread answers for one batch: per path, null or its error. */
export interface SyncReply {
  id: number;
  errors: ({ name: string; message: string } | null)[];
}

/** What the sync thread is asked: sync these paths, or close its descriptor of one. */
export type SyncMessage = { id: number; paths: string[] } | { forget: string };

/**
 * The sync thread of this process, started while a log uses it.
 *
 * @example
 * ```ts
 * import { DiskSync } from "./disk_sync.ts";
 * const path = Deno.makeTempFileSync();
 * const sync = new DiskSync();
 * sync.use();
 * sync.use(); // a second log: syncs go through the thread
 * using file = Deno.openSync(path, { write: true });
 * file.writeSync(new TextEncoder().encode("a record\n"));
 * await sync.sync(path, file); // on disk
 * sync.release(path);
 * sync.release(path); // the last user: the thread ends
 * ```
 */
export class DiskSync {
  #worker: Worker | undefined;
  #users = 0;
  #batch: Request[] = [];
  #flushQueued = false;
  #sent = new Map<number, Request[]>();
  #nextId = 1;

  /** Messages sent to the sync thread so far (each carries every sync asked for in one turn). */
  get batches(): number {
    return this.#nextId - 1;
  }

  /**
   * A log will sync through this. The thread starts with the second log: creating it holds
   * the event loop (100-170 ms on a loaded 2-core box), which belongs in the servers' start-up
   * (where the logs are opened), not in the middle of serving at the first commit.
   */
  use(): void {
    if (++this.#users === 2 && this.#worker === undefined) this.#start();
  }

  /** A log that used this closed `path`: the thread lets go of it, and ends after the last. */
  release(path: string): void {
    this.#worker?.postMessage({ forget: path } satisfies SyncMessage);
    if (--this.#users > 0) return;
    this.#users = 0;
    this.#stop(new Error("the record log is closed"));
  }

  /**
   * Resolves once the data written so far to `path` (open as `file`) is on disk; rejects with
   * the `fdatasync` error (as `file.syncData()` would). With more than one log in the process,
   * the requests of the same turn go to the thread together.
   */
  sync(path: string, file: { syncData(): Promise<void> }): Promise<void> {
    if (this.#users < 2) return file.syncData();
    return new Promise((resolve, reject) => {
      this.#batch.push({ path, resolve, reject });
      if (this.#flushQueued) return;
      this.#flushQueued = true;
      // After this macrotask and its microtasks: the commits one timer started all get in.
      setImmediate(() => this.#flush());
    });
  }

  #flush(): void {
    this.#flushQueued = false;
    const batch = this.#batch;
    this.#batch = [];
    if (batch.length === 0) return;
    const worker = this.#worker ?? this.#start();
    const id = this.#nextId++;
    this.#sent.set(id, batch);
    worker.postMessage({ id, paths: batch.map((r) => r.path) } satisfies SyncMessage);
  }

  #start(): Worker {
    const worker = new Worker(new URL("./disk_sync_worker.js", import.meta.url), {
      type: "module",
      name: "record-log sync",
    });
    worker.onmessage = (e: MessageEvent<SyncReply>) => {
      const batch = this.#sent.get(e.data.id);
      if (batch === undefined) return;
      this.#sent.delete(e.data.id);
      batch.forEach((r, i) => {
        const err = e.data.errors[i];
        if (err === null) r.resolve();
        else r.reject(Object.assign(new Error(err.message), { name: err.name }));
      });
    };
    // A thread that cannot run (it never should) fails what waits on it: the logs report the
    // commit failed and retry, which starts a new thread.
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.#stop(new Error(`the sync thread failed: ${e.message}`));
    };
    this.#worker = worker;
    return worker;
  }

  #stop(err: Error): void {
    this.#worker?.terminate();
    this.#worker = undefined;
    const waiting = [...this.#sent.values()].flat();
    this.#sent.clear();
    for (const r of waiting) r.reject(err);
  }
}

/** The process's sync thread, shared by every record log in it. */
export const diskSync: DiskSync = new DiskSync();
