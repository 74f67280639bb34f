/**
 * The bench's native tools: bench/loadgen.c (the load generator) and bench/echo.c (the machine's
 * line-echo floor), built with the machine's `cc` at bench time into a cache dir keyed by the
 * source's hash (never committed), and run as tracked children.
 *
 * Without `cc` the bench falls back to the Deno generator (bench/load.ts) and says so loudly: its
 * own ceiling (~45k req/s here) then caps every figure. Under `CI=true` a missing `cc` is an error.
 *
 * @module
 */

import { type Point, type Proc, ROOT, runJsonChild, startProcess } from "./common.ts";

/** The native programs the bench builds. */
export type NativeTool = "loadgen" | "echo";

/** One run of bench/loadgen.c: what it prints (a load point's fields, latencies in ms). */
export interface NativeLoad extends
  Pick<
    Point,
    "connections" | "rate" | "requests" | "throughput" | "p50" | "p99" | "p999" | "max" | "errors"
  > {
  threads: number;
  durationMs: number;
  /**
   * The same replies' p50 / p99 (ms) from when each request was actually written: in open loop,
   * without the wait of a request whose connection still waited for a late reply.
   */
  sentP50: number;
  sentP99: number;
  /** Connections the server closed. */
  closed: number;
  errorSample: string;
}

/** Options of one loadgen run (its flags). */
export interface LoadgenOptions {
  port: number;
  connections: number;
  durationMs: number;
  warmupMs?: number;
  /** Generator threads (default 1). */
  threads?: number;
  /** Open loop at this total rate (req/s); 0 or absent: closed loop. */
  rate?: number;
  /** The request line: {c} connection, {n} request number, {t} POSIX time, {x} a moving coordinate. */
  line: string;
  /** Date.now() at which sending starts (default: 50 ms after connecting). */
  startAt?: number;
}

const built = new Map<NativeTool, Promise<string>>();

/** Whether a C compiler is on PATH. */
export async function ccAvailable(): Promise<boolean> {
  try {
    const out = await new Deno.Command("cc", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

/**
 * Builds bench/<tool>.c with `cc -O2` (once per process and per source version: the binary is
 * cached under the temp dir by the source's SHA-256) and returns the binary's path.
 */
export function buildNative(tool: NativeTool): Promise<string> {
  let p = built.get(tool);
  if (!p) {
    p = compile(tool);
    built.set(tool, p);
    p.catch(() => built.delete(tool));
  }
  return p;
}

async function compile(tool: NativeTool): Promise<string> {
  const source = `${ROOT}bench/${tool}.c`;
  const bytes = await Deno.readFile(source);
  const hash = Array.from(
    new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)).slice(0, 8),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const dir = `${Deno.env.get("TMPDIR") ?? "/tmp"}/herd-bench-native`;
  const bin = `${dir}/${tool}-${hash}`;
  try {
    await Deno.stat(bin);
    return bin;
  } catch { /* not built yet */ }
  await Deno.mkdir(dir, { recursive: true });
  // Built under a unique name, then renamed: two builds at once never see half a binary.
  const tmp = `${bin}.${crypto.randomUUID()}`;
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("cc", {
      args: ["-O2", "-Wall", "-o", tmp, source, "-lm", "-lpthread"],
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    throw new Error(`cannot run cc to build bench/${tool}.c: ${(e as Error).message}`);
  }
  if (!out.success) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(`cc failed on bench/${tool}.c: ${new TextDecoder().decode(out.stderr)}`);
  }
  await Deno.rename(tmp, bin);
  return bin;
}

/** Runs the native generator once (a tracked child) and returns its JSON line. */
export async function runLoadgen(o: LoadgenOptions): Promise<NativeLoad> {
  const bin = await buildNative("loadgen");
  const args = [
    "--port",
    String(o.port),
    "--connections",
    String(o.connections),
    "--duration-ms",
    String(o.durationMs),
    "--warmup-ms",
    String(o.warmupMs ?? 0),
    "--threads",
    String(o.threads ?? 1),
    "--line",
    o.line,
  ];
  if (o.rate && o.rate > 0) args.push("--rate", String(Math.round(o.rate)));
  if (o.startAt !== undefined) args.push("--start-at", String(o.startAt));
  return await runJsonChild<NativeLoad>(args, "loadgen", bin);
}

/** Starts the C line-echo server on a free port, its output to `log`. */
export async function startNativeEcho(log: string): Promise<{ proc: Proc; port: number }> {
  const bin = await buildNative("echo");
  const proc = await startProcess(bin, ["--port", "0"], log, { ready: /^READY \d+/ });
  return { proc, port: Number(proc.readyLine.split(" ")[1]) };
}

/**
 * Says LOUDLY that part of the bench cannot run as intended on this machine (a missing package,
 * a fallback), and throws under `CI=true`, where the machine is expected to have everything.
 */
export function loudly(what: string): void {
  const bar = "!".repeat(100);
  console.error(`${bar}\n!!! ${what}\n${bar}`);
  if (Deno.env.get("CI") === "true") throw new Error(`CI=true: ${what}`);
}
