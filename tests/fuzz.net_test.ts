/**
 * Fuzzing the client protocol, seeded and bounded: fast-check builds sessions of
 * valid, near-valid (mutated), random, blank, protocol-looking and huge (> 64 KiB) lines, sends
 * each session over one connection in random chunks (so lines arrive split anywhere), ends it
 * with a final unterminated line and a half-close, or cuts it off abruptly.
 *
 * An oracle written from docs/protocol.md alone (it shares no code with the server) decides what
 * each line deserves, and the test checks, for every half-closed session:
 * - every complete non-blank line gets exactly one reply, in order, and nothing else arrives;
 * - an invalid line of at most 64 KiB gets exactly `? ` + the line trimmed of protocol
 *   whitespace; an overlong one `? ` + a prefix of it trimmed (from its first non-blank byte);
 * - a valid IAMAT gets `AT <server> <diff> <client> <location> <time>` with a well-formed,
 *   plausible diff, and is stored: a later WHATSAT answers with the newest record;
 * - a valid WHATSAT for a known client gets that AT line plus legacy JSON ending `}\n\n`, and
 *   `? ...` for an unknown one.
 * And the server never crashes and still serves normally at the end.
 */

import assert from "node:assert/strict";
// Test-only package: kept out of deno.json's runtime import map and deno.lock (tests/deno.lock).
// deno-lint-ignore no-import-prefix
import fc from "npm:fast-check@^4.3.0";
import { parseConfig } from "../servers/config.ts";
import { Herd } from "../servers/herd.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";
import { exchange, freePorts, TcpClient, waitFor } from "./_helpers/net.ts";

/** Fixed for CI; FUZZ_SEED / FUZZ_RUNS explore further by hand. */
const SEED = Number(Deno.env.get("FUZZ_SEED") ?? 0x5eed_2024);
const RUNS = Number(Deno.env.get("FUZZ_RUNS") ?? 250);
const LIMIT = 64 * 1024;
const PREFIX = 1024;

// ---------------------------------------------------------------------------------------------
// The oracle: docs/protocol.md, independently.

const WS = " \t\r\n\f\v";
const isWs = (ch: string) => WS.includes(ch);

function trim(line: string): string {
  let a = 0;
  let b = line.length;
  while (a < b && isWs(line[a])) a++;
  while (b > a && isWs(line[b - 1])) b--;
  return line.slice(a, b);
}

function fields(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  for (const ch of line) {
    if (isWs(ch)) {
      if (cur !== "") out.push(cur);
      cur = "";
    } else cur += ch;
  }
  if (cur !== "") out.push(cur);
  return out;
}

/** Unsigned decimal `int[.frac]` ≤ limit, exactly. */
function atMost(int: string, frac: string | undefined, limit: number): boolean {
  const d = int.replace(/^0+/, "");
  const l = String(limit);
  if (d.length !== l.length) return d.length < l.length;
  if (d !== l) return d < l;
  return frac === undefined || /^0*$/.test(frac);
}

function validLocation(loc: string): boolean {
  const m = /^[+-](\d+)(?:\.(\d+))?[+-](\d+)(?:\.(\d+))?$/.exec(loc);
  return m !== null && atMost(m[1], m[2], 90) && atMost(m[3], m[4], 180);
}

type Expect =
  | { kind: "none" }
  | { kind: "exact"; reply: string }
  | { kind: "iamat"; client: string; location: string; time: string }
  | { kind: "whatsat"; client: string; bound: number; invalid: string };

function expectFor(line: string): Expect {
  const f = fields(line);
  if (f.length === 0) return { kind: "none" };
  if (line.length > LIMIT) {
    // The echo starts at the command, past its leading whitespace.
    return { kind: "exact", reply: `? ${trim(trim(line).slice(0, PREFIX))}\n` };
  }
  const invalid = `? ${trim(line)}\n`;
  if (f.length === 4 && f[1].length <= 256) {
    const [verb, client, a, b] = f;
    // Times more than --max-future-s (a day) ahead of the server's clock are invalid too.
    const latest = String(Math.floor(Date.now() / 1000) + SERVER_DEFAULTS.maxFutureS);
    if (
      verb === "IAMAT" && validLocation(a) && /^\d+(\.\d+)?$/.test(b) &&
      compareTimes(b, latest) <= 0
    ) {
      return { kind: "iamat", client, location: a, time: b };
    }
    const r = /^(\d+)(?:\.(\d+))?$/.exec(a);
    if (
      verb === "WHATSAT" && r !== null && !/^0+$/.test(r[1] + (r[2] ?? "")) &&
      atMost(r[1], r[2], 50) &&
      /^\d+$/.test(b) && atMost(b, undefined, 20)
    ) {
      return { kind: "whatsat", client, bound: Number(b), invalid };
    }
  }
  return { kind: "exact", reply: invalid };
}

/** Exact comparison of two protocol times. */
function compareTimes(a: string, b: string): number {
  const [ai, af = ""] = a.split(".");
  const [bi, bf = ""] = b.split(".");
  const x = ai.replace(/^0+/, "");
  const y = bi.replace(/^0+/, "");
  if (x.length !== y.length) return x.length - y.length;
  if (x !== y) return x < y ? -1 : 1;
  const p = af.replace(/0+$/, "");
  const q = bf.replace(/0+$/, "");
  return p === q ? 0 : p < q ? -1 : 1;
}

/**
 * What the server must hold per client. `candidates`: the AT lines it may hold (all with the
 * newest time; equal times are broken by a rule the protocol leaves to the implementation).
 * `wild`: an abruptly cut session may or may not have stored something newer.
 */
interface Known {
  time: string;
  candidates: Set<string>;
}
const model = new Map<string, Known>();
const wild = new Set<string>();

function stored(client: string, time: string, at: string): void {
  const k = model.get(client);
  if (k === undefined || compareTimes(time, k.time) > 0) {
    model.set(client, { time, candidates: new Set([at]) });
  } else if (compareTimes(time, k.time) === 0) k.candidates.add(at);
}

// ---------------------------------------------------------------------------------------------
// Generators. Lines are binary strings (one char per byte).

const utf8 = (s: string) => String.fromCharCode(...new TextEncoder().encode(s));
const CLIENTS = [
  "kiwi.cs.ucla.edu",
  "c1",
  "c2",
  "a.b-c_d",
  utf8("Ωmega"),
  "x".repeat(256),
  "\xff\xfe",
];

const digits = (min: number, max: number) =>
  fc.array(fc.constantFrom(..."0123456789"), { minLength: min, maxLength: max }).map((d) =>
    d.join("")
  );
const decimal = (intMax: number) =>
  fc.tuple(fc.integer({ min: 0, max: intMax }), fc.option(digits(1, 9), { nil: undefined })).map((
    [i, f],
  ) => f === undefined ? String(i) : `${i}.${f}`);
const sign = fc.constantFrom("+", "-");
const location = fc.tuple(sign, decimal(90), sign, decimal(180)).map(([a, b, c, d]) =>
  `${a}${b}${c}${d}`
);
const time = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.tuple(fc.integer({ min: 1_600_000_000, max: 1_800_000_000 }), digits(0, 12)),
  },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: 2_000_000_000 }), digits(0, 30)) },
).map(([i, f]) => (f === "" ? String(i) : `${i}.${f}`));
const client = fc.constantFrom(...CLIENTS);
const gap = fc.constantFrom(" ", " ", " ", "  ", "\t", " \t ", "\v", "\f", "\r");
const lead = fc.constantFrom("", "", "", " ", "\t", "\r", " \f");

const iamatLine = fc.tuple(lead, client, gap, location, gap, time, lead).map((
  [l, c, g, loc, g2, t, tr],
) => `${l}IAMAT ${c}${g}${loc}${g2}${t}${tr}`);
const whatsatLine = fc.tuple(lead, client, gap, decimal(50), fc.integer({ min: 0, max: 20 }), lead)
  .map(([l, c, g, r, b, tr]) => `${l}WHATSAT ${c}${g}${r === "0" ? "1" : r} ${b}${tr}`);

const MUTANT_CHARS = [
  " ",
  "\t",
  "\r",
  "\v",
  "\f",
  "\x00",
  "\x85",
  "\xa0",
  "+",
  "-",
  ".",
  "e",
  "9",
  "0",
  "x",
  "\xc3",
];
const mutation = fc.oneof(
  fc.tuple(fc.constant("del"), fc.nat(), fc.constant("")),
  fc.tuple(fc.constant("ins"), fc.nat(), fc.constantFrom(...MUTANT_CHARS)),
  fc.tuple(fc.constant("set"), fc.nat(), fc.constantFrom(...MUTANT_CHARS)),
  fc.tuple(
    fc.constant("field"),
    fc.nat(),
    fc.constantFrom(
      "iamat",
      "Whatsat",
      "+90.0000001+0",
      "+0-180.5",
      "-91+0",
      "50.01",
      "0",
      "0.0",
      "21",
      "020",
      "1e9",
      "",
    ),
  ),
  fc.tuple(fc.constant("extra"), fc.nat(), fc.constantFrom("x", "1", "IAMAT")),
);
const nearValid = fc.tuple(
  fc.oneof(iamatLine, whatsatLine),
  fc.array(mutation, { minLength: 1, maxLength: 2 }),
)
  .map(([line, muts]) => {
    for (const [op, n, ch] of muts) {
      const i = line.length === 0 ? 0 : n % line.length;
      if (op === "del") line = line.slice(0, i) + line.slice(i + 1);
      else if (op === "ins") line = line.slice(0, i) + ch + line.slice(i);
      else if (op === "set") line = line.slice(0, i) + ch + line.slice(i + 1);
      else {
        const f = line.trim().split(" ");
        if (op === "field") f[n % f.length] = ch;
        else f.splice(n % (f.length + 1), 0, ch);
        line = f.join(" ");
      }
    }
    return line;
  });
const randomBytes = fc.uint8Array({ maxLength: 120 }).map((b) => String.fromCharCode(...b)); // may hold LFs
const blank = fc.array(fc.constantFrom(" ", "\t", "\r", "\v", "\f"), { maxLength: 6 }).map((w) =>
  w.join("")
);
const serverish = fc.constantFrom(
  "AT Clark +0.263873386 kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503",
  "R 1 Hill +0.1 c1 +1+1 1",
  "HERD2 HELLO peer Hill Solo 0123456789abcdef0123456789abcdef",
  "HERD2 HELLO observer dash Other 0123456789abcdef0123456789abcdef",
  "PING",
  "iamat c1 +1+1 1",
  "WHATSAT",
  "IAMAT c1 +1+1",
);
const huge = fc.tuple(
  fc.integer({ min: 1, max: 3000 }),
  fc.constantFrom("IAMAT ", " ", "x", "\xc3\xa9"),
)
  .map(([extra, head]) => head + "y".repeat(LIMIT - head.length + extra));
const atLimit = fc.constantFrom("IAMAT c1 +1+1 " + "1".repeat(LIMIT - 14), "z".repeat(LIMIT));
const eol = fc.constantFrom("\n", "\n", "\n", "\r\n", " \n", "\t\r\n");

const segment = fc.oneof(
  { weight: 30, arbitrary: fc.tuple(iamatLine, eol).map(([l, e]) => l + e) },
  { weight: 20, arbitrary: fc.tuple(whatsatLine, eol).map(([l, e]) => l + e) },
  { weight: 25, arbitrary: fc.tuple(nearValid, eol).map(([l, e]) => l + e) },
  { weight: 8, arbitrary: fc.tuple(randomBytes, eol).map(([l, e]) => l + e) },
  { weight: 5, arbitrary: fc.tuple(blank, eol).map(([l, e]) => l + e) },
  { weight: 5, arbitrary: fc.tuple(serverish, eol).map(([l, e]) => l + e) },
  { weight: 1, arbitrary: fc.tuple(huge, eol).map(([l, e]) => l + e) },
  { weight: 1, arbitrary: fc.tuple(atLimit, fc.constant("\n")).map(([l, e]) => l + e) },
);
const session = fc.record({
  segments: fc.array(segment, { minLength: 0, maxLength: 40, size: "max" }),
  tail: fc.oneof(
    fc.constant(""),
    iamatLine,
    whatsatLine,
    nearValid,
    randomBytes.map((s) => s.replace(/\n/g, "")),
  ),
  cuts: fc.array(fc.nat(), { maxLength: 8 }),
  abrupt: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, {
    weight: 1,
    arbitrary: fc.constant(true),
  }),
});
type Session = typeof session extends fc.Arbitrary<infer T> ? T : never;

// ---------------------------------------------------------------------------------------------

function chunks(stream: string, cuts: number[]): string[] {
  if (stream.length === 0) return [];
  const at = [...new Set(cuts.map((c) => c % stream.length))].filter((c) => c > 0).sort((a, b) =>
    a - b
  );
  const out: string[] = [];
  let prev = 0;
  for (const c of [...at, stream.length]) {
    out.push(stream.slice(prev, c));
    prev = c;
  }
  return out;
}

const stats = {
  sessions: 0,
  abrupt: 0,
  lines: 0,
  replies: 0,
  iamat: 0,
  whatsatKnown: 0,
  invalid: 0,
  overlong: 0,
};

async function send(c: TcpClient, s: Session, stream: string): Promise<void> {
  for (const [i, chunk] of chunks(stream, s.cuts).entries()) {
    await c.send(chunk);
    if (i % 2 === 1) await new Promise((r) => setTimeout(r, 1)); // let the server read it apart
  }
}

/** Checks one half-closed session's replies against the oracle, updating the model. */
function check(stream: string, text: string): void {
  const parts = stream.split("\n");
  const lines = parts.slice(0, -1);
  if (parts[parts.length - 1] !== "") lines.push(parts[parts.length - 1]); // final line at EOF
  const now = Date.now() / 1000;
  let pos = 0;
  const fail = (line: string, why: string) =>
    new Error(
      `${why}\n  line: ${JSON.stringify(line.slice(0, 200))}\n  at: ${
        JSON.stringify(text.slice(pos, pos + 200))
      }`,
    );
  for (const line of lines) {
    stats.lines++;
    const e = expectFor(line);
    if (e.kind === "none") continue;
    stats.replies++;
    const lf = text.indexOf("\n", pos);
    if (lf === -1) throw fail(line, "missing reply");
    const first = text.slice(pos, lf);
    if (e.kind === "exact") {
      if (!text.startsWith(e.reply, pos)) {
        throw fail(line, `expected ${JSON.stringify(e.reply.slice(0, 100))}`);
      }
      pos += e.reply.length;
      if (line.length > LIMIT) stats.overlong++;
      else stats.invalid++;
    } else if (e.kind === "iamat") {
      const m = /^AT Solo ([+-])(\d+)\.(\d{9}) ([^ ]+) ([^ ]+) ([^ ]+)$/.exec(first);
      if (m === null || m[4] !== e.client || m[5] !== e.location || m[6] !== e.time) {
        throw fail(line, "bad AT reply");
      }
      const diff = Number(`${m[1]}${m[2]}.${m[3]}`);
      if (Number(e.time) < 1e12 && Math.abs(diff - (now - Number(e.time))) > 30) {
        throw fail(line, `implausible diff ${diff}`);
      }
      stored(e.client, e.time, first);
      pos = lf + 1;
      stats.iamat++;
    } else {
      const known = model.get(e.client);
      if (first === e.invalid.slice(0, -1)) {
        if (known !== undefined) throw fail(line, "known client answered ?");
        wild.delete(e.client);
        pos = lf + 1;
        continue;
      }
      if (!first.startsWith("AT ") || first.split(" ")[3] !== e.client) {
        throw fail(line, "bad WHATSAT reply");
      }
      if (known === undefined && !wild.has(e.client)) {
        throw fail(line, "unknown client answered with AT");
      }
      if (known !== undefined && !known.candidates.has(first) && !wild.has(e.client)) {
        throw fail(line, `not the newest record: ${[...known.candidates].join(" | ")}`);
      }
      // What it holds now is known exactly.
      const t = first.split(" ")[5];
      model.set(e.client, { time: t, candidates: new Set([first]) });
      wild.delete(e.client);
      const end = text.indexOf("}\n\n", lf);
      if (text[lf + 1] !== "{" || end === -1) throw fail(line, "no JSON after the AT line");
      const json = JSON.parse(
        new TextDecoder().decode(
          Uint8Array.from(text.slice(lf + 1, end + 1), (ch) => ch.charCodeAt(0)),
        ),
      );
      assert.ok(
        Array.isArray(json.results) && json.results.length <= e.bound,
        "results cut to the bound",
      );
      assert.equal(typeof json.status, "string");
      pos = end + 3;
      stats.whatsatKnown++;
    }
  }
  if (pos !== text.length) throw fail("(end)", `extra bytes after the last reply`);
}

Deno.test("fuzz: random, mutated, split, huge and cut-off lines; one exact reply per line, in order", async () => {
  const [port] = freePorts(1);
  const herd = new Herd(parseConfig({ servers: { Solo: { port } } }), {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: "fuzz-test-secret-0123",
    partialLineMs: 0,
    whatsatGraceMs: 0,
  });
  await herd.start();
  const server = herd.servers.get("Solo")!;
  const started = performance.now();
  try {
    await fc.assert(
      fc.asyncProperty(session, async (s) => {
        stats.sessions++;
        const stream = s.segments.join("") + s.tail;
        await using c = await TcpClient.connect(port);
        if (s.abrupt) {
          stats.abrupt++;
          // Whatever valid IAMAT it sent (the unterminated last line too: the close may be
          // a clean EOF) may or may not have been stored.
          const sent = stream.slice(0, Math.floor(stream.length * 0.7));
          for (const line of sent.split("\n")) {
            const e = expectFor(line);
            if (e.kind === "iamat") wild.add(e.client);
          }
          await send(c, s, sent);
          await c.close();
          // The server must notice and finish with it before the next session is judged.
          await waitFor(() => server.connections === 0, 5000, "the cut connection to close");
          return;
        }
        await send(c, s, stream);
        await c.conn.closeWrite();
        const text = await c.waitEof(15_000);
        check(stream, text);
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
    // Still alive and serving.
    assert.match(
      await exchange(port, "IAMAT after.fuzz +1+1 1700000000\n"),
      /^AT Solo \S+ after\.fuzz \+1\+1 1700000000\n$/,
    );
    assert.match(
      await exchange(port, "WHATSAT after.fuzz 1 0\n"),
      /^AT Solo \S+ after\.fuzz .*\n\{[^]*\}\n\n$/,
    );
    const ms = performance.now() - started;
    console.log(`  ${JSON.stringify(stats)} in ${ms.toFixed(0)} ms`);
    assert.ok(stats.lines >= 2000, `only ${stats.lines} lines`);
  } finally {
    await herd.stop();
  }
});
