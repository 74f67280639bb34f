/**
 * Read-your-writes tries, as a grader's script makes them: IAMAT at one server, read the AT
 * reply, then at once WHATSAT at other servers; any answer older than the AT line is stale.
 * Several lanes run at once, each with its own client ID and its own long-lived connections.
 * Every read has a deadline.
 *
 * @module
 */

const ENC = new TextEncoder();
const DEC = new TextDecoder();

/** A bare line-oriented connection: send a command, read one reply. */
class Wire {
  #conn: Deno.TcpConn;
  #buf = "";
  #chunk = new Uint8Array(65536);

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  static async open(port: number): Promise<Wire> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    return new Wire(conn);
  }

  /** Sends `line` and returns its reply: one line, or an AT line with JSON up to `}\n\n`. */
  async ask(line: string, ms: number): Promise<string> {
    await this.#conn.write(ENC.encode(line + "\n"));
    const deadline = setTimeout(() => this.close(), ms);
    try {
      for (;;) {
        const lf = this.#buf.indexOf("\n");
        if (lf >= 0) {
          const end = this.#buf[lf + 1] === "{" ? this.#buf.indexOf("}\n\n", lf) : lf;
          if (end >= 0) {
            const stop = end === lf ? lf + 1 : end + 3;
            const reply = this.#buf.slice(0, stop);
            this.#buf = this.#buf.slice(stop);
            return reply;
          }
        }
        const n = await this.#conn.read(this.#chunk).catch(() => null);
        if (n === null) throw new Error(`no reply to ${line} within ${ms} ms`);
        this.#buf += DEC.decode(this.#chunk.subarray(0, n));
      }
    } finally {
      clearTimeout(deadline);
    }
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

/** The outcome of a run of tries. */
export interface RywResult {
  tries: number;
  /** Per reader server: answers older than the AT reply just read. */
  stale: Record<string, number>;
  /** A few stale answers, for the failure message. */
  examples: string[];
  ms: number;
}

/**
 * Runs `tries` read-your-writes tries split over `lanes`: each IAMATs at `origin`, and right
 * after its AT reply asks every reader (in parallel) with `WHATSAT c 10 0` (no Places lookup).
 * Before the first try, each lane's client is made known everywhere with an older record, so the
 * unknown-client grace plays no part: a reader either has the new record or answers the old.
 */
export async function readYourWrites(
  port: (name: string) => number,
  origin: string,
  readers: readonly string[],
  tries: number,
  lanes = 4,
  ms = 10_000,
): Promise<RywResult> {
  const started = performance.now();
  const stale: Record<string, number> = Object.fromEntries(readers.map((r) => [r, 0]));
  const examples: string[] = [];
  const base = Temporal.Now.instant().epochNanoseconds / 1_000_000_000n - 1000n;
  const tag = crypto.randomUUID().slice(0, 6);
  await Promise.all(Array.from({ length: lanes }, async (_, lane) => {
    const client = `ryw-${tag}-${lane}`;
    const at = await Wire.open(port(origin));
    const wires = await Promise.all(readers.map((r) => Wire.open(port(r))));
    try {
      const first = await at.ask(`IAMAT ${client} +34.068930-118.445127 ${base}.0`, ms);
      // Known everywhere before the tries start (bounded: the flood takes milliseconds).
      for (let i = 0; i < 500; i++) {
        const got = await Promise.all(wires.map((w) => w.ask(`WHATSAT ${client} 10 0`, ms)));
        if (got.every((g) => g.startsWith(first))) break;
        if (i === 499) throw new Error(`${client} never known everywhere: ${got}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      for (let j = lane; j < tries; j += lanes) {
        const reply = await at.ask(
          `IAMAT ${client} +34.068930-118.445127 ${base}.${String(j + 1).padStart(6, "0")}`,
          ms,
        );
        const got = await Promise.all(wires.map((w) => w.ask(`WHATSAT ${client} 10 0`, ms)));
        got.forEach((g, k) => {
          if (!g.startsWith(reply)) {
            stale[readers[k]]++;
            if (examples.length < 3) {
              examples.push(`${readers[k]}: ${g.split("\n")[0]} after ${reply}`);
            }
          }
        });
      }
    } finally {
      at.close();
      for (const w of wires) w.close();
    }
  }));
  return { tries, stale, examples, ms: performance.now() - started };
}
