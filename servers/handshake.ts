/**
 * The link handshake (peers and observers), both sides, in one place: the exchange itself. Its
 * lines and the texts the MACs cover are in wire.ts; the wire format is in docs/protocol.md.
 *
 *     dialler  → acceptor  HERD2 HELLO <role> <dialler> <acceptor> <nonceD>
 *     acceptor → dialler   HERD2 CHALLENGE <acceptor> <dialler> <nonceA> <macA>
 *     dialler  → acceptor  HERD2 PROOF <macD>
 *     acceptor → dialler   HERD2 WELCOME <acceptor> <dialler>   (peer; observer: HERD2 WATCHING <acceptor>)
 *
 * Each side proves the secret with an HMAC over a fresh random nonce chosen by the OTHER side
 * (and its own), bound to the role, the prover's direction and both names. So a recorded
 * handshake is useless at any later time, also after a restart (no memory of used nonces
 * needed), and clocks play no part. The acceptor commits nothing until the PROOF verifies.
 *
 * @module
 */

import type { HerdAuth } from "./auth.ts";
import { randomHex } from "./text.ts";
import { binaryToBytes, type LineSplitter, type SplitLine } from "./lines.ts";
import { writeAll } from "./io.ts";
import { closeAfter } from "./timeout.ts";
import {
  formatChallenge,
  formatHello,
  formatProof,
  type Hello,
  isBusy,
  isInvalidReply,
  isRefused,
  isWelcome,
  parseChallenge,
  parseProof,
  proofText,
  REFUSED_LINE,
  type Role,
} from "./wire.ts";

/** Bound on a whole handshake, either side (connect excluded). */
export const HANDSHAKE_TIMEOUT_MS = 3000;

/**
 * A fresh random nonce (128 bits, hex).
 *
 * @example
 * ```ts
 * newNonce().length; // 32
 * ```
 */
export function newNonce(): string {
  return randomHex(16);
}

/**
 * Longest handshake line, LF excluded. The longest the herd sends is a CHALLENGE (~250 bytes) or
 * a refusal echoing a HELLO (~200); a reader gives up on the first line past this, so a
 * handshake reads a few KiB at most, never a stream without end (a port held by something that
 * answers a HELLO with an endless line read ~750 MB per redial until the timeout).
 */
export const HANDSHAKE_LINE_LIMIT = 1024;

/** Why a handshake reader gave up on a line that outgrew {@linkcode HANDSHAKE_LINE_LIMIT}. */
const OVERLONG = `line over the handshake line limit (${HANDSHAKE_LINE_LIMIT} bytes)`;

/**
 * Reads lines until one is complete (taking `pending` first); undefined at EOF, on error, or on
 * a line over {@linkcode HANDSHAKE_LINE_LIMIT} (then `overlong` is set).
 */
export class LineReader {
  #conn: Deno.Conn;
  #splitter: LineSplitter;
  #pending: SplitLine[];
  overlong = false;

  constructor(conn: Deno.Conn, splitter: LineSplitter, pending: SplitLine[]) {
    this.#conn = conn;
    this.#splitter = splitter;
    this.#pending = [...pending];
  }

  async next(): Promise<string | undefined> {
    const buf = new Uint8Array(4096);
    while (this.#pending.length === 0) {
      let n: number | null;
      try {
        n = await this.#conn.read(buf);
      } catch {
        return undefined;
      }
      if (n === null) return undefined;
      this.#pending.push(...this.#splitter.push(buf.subarray(0, n)));
      // The line in progress, as the splitter holds it (its own limit is the stream's, larger).
      const s = this.#splitter;
      if (this.#pending.length === 0 && (s.discarding || s.pending > HANDSHAKE_LINE_LIMIT)) {
        this.overlong = true;
        return undefined;
      }
    }
    const line = this.#pending.shift()!;
    if (line.overlong || line.text.length > HANDSHAKE_LINE_LIMIT) {
      this.overlong = true;
      return undefined;
    }
    return line.text;
  }

  /** Lines already read past the handshake (the start of the stream). */
  get rest(): SplitLine[] {
    return this.#pending;
  }
}

/** A handshake's outcome: the lines read past it, or why it failed. */
export type HandshakeResult =
  | { ok: true; rest: SplitLine[] }
  | {
    ok: false;
    reason: string;
    busy?: boolean;
    /**
     * (Dialler.) Nothing the other end sent says it is not `peer`: it answered nothing (a
     * stopped or still loading server's backlog holds the HELLO), or it proved the secret
     * before the failure. A link port known from before is kept then (servers/link_port.ts).
     */
    inconclusive?: boolean;
  };

async function send(conn: Deno.Conn, text: string): Promise<boolean> {
  try {
    await writeAll(conn, binaryToBytes(text));
    return true;
  } catch {
    return false;
  }
}

/**
 * The dialler's side, on a connected socket: HELLO, check the CHALLENGE, PROOF, then wait for
 * WELCOME (peer) or WATCHING (observer). On failure the caller closes `conn`.
 *
 * @example
 * ```ts
 * import type { HerdAuth } from "./auth.ts";
 * import { LineSplitter, type SplitLine } from "./lines.ts";
 * declare const auth: HerdAuth;
 * declare const conn: Deno.Conn;
 * declare function startStream(conn: Deno.Conn, rest: SplitLine[]): void;
 *
 * const r = await dialHandshake(auth, conn, new LineSplitter(), "peer", "Hill", "Jaquez");
 * if (r.ok) startStream(conn, r.rest);
 * ```
 */
export async function dialHandshake(
  auth: HerdAuth,
  conn: Deno.Conn,
  splitter: LineSplitter,
  role: Role,
  me: string,
  peer: string,
  timeoutMs = HANDSHAKE_TIMEOUT_MS,
): Promise<HandshakeResult> {
  const timer = closeAfter(conn, timeoutMs);
  try {
    const nonceD = newNonce();
    if (!(await send(conn, formatHello({ role, from: me, to: peer, nonce: nonceD })))) {
      return {
        ok: false,
        reason: timer.expired ? "handshake timeout" : "connection lost",
        inconclusive: true,
      };
    }
    const reader = new LineReader(conn, splitter, []);
    const challenge = await reader.next();
    if (challenge === undefined) {
      return {
        ok: false,
        reason: reader.overlong
          ? `${peer} sent a ${OVERLONG}`
          : timer.expired
          ? `handshake timeout (no challenge from ${peer})`
          : "connection lost",
        inconclusive: !reader.overlong,
      };
    }
    if (isBusy(challenge)) return { ok: false, reason: "busy", busy: true };
    if (isInvalidReply(challenge)) {
      return { ok: false, reason: `${peer} refused our HELLO` };
    }
    const c = parseChallenge(challenge);
    if (c === undefined || c.acceptor !== peer || c.dialler !== me) {
      return { ok: false, reason: `unexpected answer ${JSON.stringify(challenge.slice(0, 80))}` };
    }
    const nonceA = c.nonce;
    if (!(await auth.verify(proofText(role, "acceptor", me, peer, nonceD, nonceA), c.mac))) {
      await send(conn, REFUSED_LINE);
      return { ok: false, reason: `bad proof from ${peer}` };
    }
    const mac = await auth.sign(proofText(role, "dialler", me, peer, nonceD, nonceA));
    if (!(await send(conn, formatProof(mac)))) {
      return {
        ok: false,
        reason: timer.expired ? "handshake timeout" : "connection lost",
        inconclusive: true,
      };
    }
    const welcome = await reader.next();
    if (welcome !== undefined && isBusy(welcome)) return { ok: false, reason: "busy", busy: true };
    if (welcome === undefined) {
      return {
        ok: false,
        reason: reader.overlong
          ? `${peer} sent a ${OVERLONG}`
          : timer.expired
          ? `handshake timeout (no answer to our proof from ${peer})`
          : `${peer} closed after our proof (it refused it)`,
        inconclusive: true, // it proved the secret: it is `peer`
      };
    }
    if (!isWelcome(welcome, role, peer, me)) {
      return { ok: false, reason: `unexpected answer ${JSON.stringify(welcome.slice(0, 80))}` };
    }
    return { ok: true, rest: reader.rest };
  } finally {
    timer.clear();
  }
}

/**
 * The acceptor's side, after the caller checked the HELLO's names: CHALLENGE, then check the
 * PROOF. Sends nothing more: on success the caller sends WELCOME/WATCHING (or BUSY); on
 * failure the caller closes `conn`.
 *
 * @example
 * ```ts
 * import type { HerdAuth } from "./auth.ts";
 * import { binaryToBytes, type LineSplitter, type SplitLine } from "./lines.ts";
 * import { writeAll } from "./io.ts";
 * import { formatWelcome, type Hello } from "./wire.ts";
 * declare const auth: HerdAuth;
 * declare const conn: Deno.Conn;
 * declare const splitter: LineSplitter; // the connection's, holding what followed the HELLO
 * declare const hello: Hello; // parseHello() of the connection's first line
 * declare const rest: SplitLine[]; // lines already read past the HELLO
 * const me = hello.to;
 *
 * const r = await acceptHandshake(auth, conn, splitter, hello, rest);
 * if (r.ok) await writeAll(conn, binaryToBytes(formatWelcome("peer", me, hello.from)));
 * ```
 */
export async function acceptHandshake(
  auth: HerdAuth,
  conn: Deno.Conn,
  splitter: LineSplitter,
  hello: Hello,
  pending: SplitLine[],
  timeoutMs = HANDSHAKE_TIMEOUT_MS,
): Promise<HandshakeResult> {
  const { role, from, to, nonce: nonceD } = hello;
  const timer = closeAfter(conn, timeoutMs);
  try {
    const nonceA = newNonce();
    const mac = await auth.sign(proofText(role, "acceptor", from, to, nonceD, nonceA));
    if (!(await send(conn, formatChallenge({ acceptor: to, dialler: from, nonce: nonceA, mac })))) {
      return { ok: false, reason: timer.expired ? "handshake timeout" : "connection lost" };
    }
    const reader = new LineReader(conn, splitter, pending);
    const line = await reader.next();
    const what = role === "peer" ? from : `observer ${from}`;
    if (line === undefined) {
      return {
        ok: false,
        reason: reader.overlong
          ? `${what} sent a ${OVERLONG}`
          : timer.expired
          ? `handshake timeout (no proof from ${what})`
          : `${what} closed during the handshake`,
      };
    }
    if (isRefused(line)) {
      return { ok: false, reason: `${what} rejected our proof` };
    }
    const macD = parseProof(line);
    if (macD === undefined) {
      return { ok: false, reason: `malformed proof from ${what}` };
    }
    if (!(await auth.verify(proofText(role, "dialler", from, to, nonceD, nonceA), macD))) {
      return { ok: false, reason: `bad proof from ${what}` };
    }
    return { ok: true, rest: reader.rest };
  } finally {
    timer.clear();
  }
}
