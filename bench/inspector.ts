/**
 * A minimal V8 inspector client for a child started with `deno run --inspect=127.0.0.1:PORT`:
 * force a garbage collection and read the JS heap (bench/memory.ts), or take a CPU profile
 * while load runs (bench/profile.ts). Chrome DevTools Protocol over the inspector's WebSocket.
 *
 * A connected inspector that is not paused costs the process next to nothing; the profiler
 * costs a few percent while it samples.
 *
 * @module
 */

/** A CPU profile as `Profiler.stop` returns it (the `.cpuprofile` format). */
export interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
    hitCount?: number;
    children?: number[];
  }[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/** One connected inspector session. */
export class Inspector {
  #ws: WebSocket;
  #next = 1;
  #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (ev) => {
      const msg = JSON.parse(String(ev.data));
      if (msg.id === undefined) return; // an event
      const p = this.#pending.get(msg.id);
      if (!p) return;
      this.#pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`${msg.error.message} (${msg.error.code})`));
      else p.resolve(msg.result);
    };
    ws.onclose = () => {
      for (const p of this.#pending.values()) p.reject(new Error("inspector closed"));
      this.#pending.clear();
    };
  }

  /**
   * Connects to the inspector on `port` (retrying until `timeoutMs`). `beforeRun` runs before a
   * child started with `--inspect-wait` is let go (e.g. to profile its start-up).
   */
  static async connect(
    port: number,
    timeoutMs = 10_000,
    beforeRun?: (insp: Inspector) => Promise<void>,
  ): Promise<Inspector> {
    const deadline = Date.now() + timeoutMs;
    let url: string | undefined;
    while (url === undefined) {
      try {
        const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
        url = list[0]?.webSocketDebuggerUrl;
      } catch {
        // not listening yet
      }
      if (url === undefined) {
        if (Date.now() > deadline) throw new Error(`no inspector on port ${port}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`cannot open ${url}`));
    });
    const insp = new Inspector(ws);
    await beforeRun?.(insp);
    // Deno waits for this before it treats the session as attached.
    await insp.call("Runtime.runIfWaitingForDebugger").catch(() => {});
    return insp;
  }

  /** Sends one command and resolves with its result; rejects after `timeoutMs`. */
  call<T = unknown>(method: string, params: Record<string, unknown> = {}, timeoutMs = 60_000) {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${method}: no answer in ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Forces a full garbage collection, then returns the JS heap's used and total bytes. */
  async gcAndHeap(): Promise<{ usedBytes: number; totalBytes: number }> {
    await this.call("HeapProfiler.collectGarbage");
    const h = await this.call<{ usedSize: number; totalSize: number }>("Runtime.getHeapUsage");
    return { usedBytes: h.usedSize, totalBytes: h.totalSize };
  }

  /**
   * `Deno.memoryUsage()` inside the inspected process: rss, heapTotal, heapUsed and external
   * (ArrayBuffer backing stores and other memory V8 is told about but does not hold in its heap).
   */
  async memoryUsage(): Promise<Deno.MemoryUsage> {
    const r = await this.call<{ result: { value?: string } }>("Runtime.evaluate", {
      expression: "JSON.stringify(Deno.memoryUsage())",
      returnByValue: true,
    });
    return JSON.parse(r.result.value ?? "{}");
  }

  /** Starts the sampling profiler (interval in µs). */
  async startProfile(intervalUs = 500): Promise<void> {
    await this.call("Profiler.enable");
    await this.call("Profiler.setSamplingInterval", { interval: intervalUs });
    await this.call("Profiler.start");
  }

  /** Stops the profiler and returns the profile. */
  async stopProfile(): Promise<CpuProfile> {
    const r = await this.call<{ profile: CpuProfile }>("Profiler.stop");
    return r.profile;
  }

  close(): void {
    try {
      this.#ws.close();
    } catch { /* closed */ }
  }
}

/** Self time per function, from a profile's samples. */
export interface SelfTime {
  functionName: string;
  /** `file.ts:line` (1-based), shortened to the repository. */
  where: string;
  ms: number;
  /** Share of all samples, 0..1. */
  share: number;
}

/**
 * Top `n` functions by self time. `(idle)` and `(program)` are kept: they say how much of the
 * time the process was waiting or inside V8/Deno itself. Functions of the same name and place are
 * summed over their call sites.
 */
export function topSelfTime(profile: CpuProfile, n = 25, root = ""): {
  totalMs: number;
  top: SelfTime[];
} {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    // timeDeltas[i] is the time before sample i; attribute the gap after it to sample i.
    const dt = deltas[i + 1] ?? 0;
    selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + Math.max(0, dt));
  }
  let total = 0;
  const grouped = new Map<string, SelfTime>();
  for (const [id, us] of selfUs) {
    total += us;
    const f = byId.get(id)!.callFrame;
    const file = f.url.replace(/^file:\/\//, "").replace(root, "");
    const where = file ? `${file.split("/").slice(-2).join("/")}:${f.lineNumber + 1}` : "";
    const name = f.functionName || "(anonymous)";
    const key = `${name}@${where}`;
    const g = grouped.get(key) ?? { functionName: name, where, ms: 0, share: 0 };
    g.ms += us / 1000;
    grouped.set(key, g);
  }
  const top = [...grouped.values()].sort((a, b) => b.ms - a.ms).slice(0, n).map((g) => ({
    ...g,
    ms: Math.round(g.ms * 10) / 10,
    share: total > 0 ? Math.round((g.ms * 1000 / total) * 1000) / 1000 : 0,
  }));
  return { totalMs: Math.round(total / 1000), top };
}
