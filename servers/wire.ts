/**
 * The server-to-server and observer wire formats, in one place: every message a link or an
 * observer stream carries, as a named constant with one format and one parse function, and the
 * texts the handshake's MACs cover (built here for both sides). Pure: no I/O, no state. The
 * exchange itself is in handshake.ts (both sides), peers.ts (links) and observe.ts /
 * dashboard/remote_herd.ts (observers); docs/protocol.md describes the protocol.
 *
 *     dialler  → acceptor  HERD2 HELLO <role> <dialler> <acceptor> <nonceD>
 *     acceptor → dialler   HERD2 CHALLENGE <acceptor> <dialler> <nonceA> <macA>
 *     dialler  → acceptor  HERD2 PROOF <macD>
 *     acceptor → dialler   HERD2 WELCOME <acceptor> <dialler>   (observer: HERD2 WATCHING <acceptor>)
 *     (or, instead of CHALLENGE or WELCOME: HERD2 BUSY; the dialler's refusal: HERD2 REFUSED bad proof)
 *
 *     on the client port, before a plain link or observer dial (then closed; link_port.ts):
 *     dialler  → acceptor  HERD2 LINKPORT <acceptor>
 *     acceptor → dialler   HERD2 LINKPORT <acceptor> <port>   (an older server: ? HERD2 LINKPORT ...)
 *
 *     link, both ways:     SYNC <epoch> <head> <yourEpoch> <mark>
 *                          R <seq> <origin> <diff> <client> <location> <time>
 *                          S <seq>      A <from> <to>      PING      CAUGHTUP <n>
 *                          (empty line after SYNC: "I answer PING")      PONG
 *                          (a second empty line: "I know GO, HOLD and DIGEST")
 *                          GO      HOLD      DIGEST <salt> <buckets> <first> <hex>
 *
 *     server → observer:   STATE <json>   RECORDS <json array>   EVENT <json>   METRICS <json>
 *
 * @module
 */

import { asciiJson, type HerdEvent } from "./events.ts";
import type { AtFields } from "./record.ts";
import { type BucketDigest, type DigestPart, digestParts, MAX_BUCKETS } from "./digest.ts";
import { INTEGER, splitFields } from "./protocol.ts";
import { SERVER_NAME } from "./limits.ts";
import type { ServerState } from "./snapshot.ts";

// ---------------------------------------------------------------------------------------------
// Telling a handshake from a client's first line.

/**
 * Every peer and observer handshake line starts with this, whatever its version: a connection
 * over the client cap is admitted only if its first bytes are these.
 */
export const HANDSHAKE_TAG = "HERD";
/** Every line of this version's handshake starts with this; a client's first line is checked. */
export const HANDSHAKE_PREFIX = "HERD2 ";

// ---------------------------------------------------------------------------------------------
// The handshake.

// The link-port question and answer are formatted in a module of their own: `server NAME`
// answers the question before the rest of the program (this module included) has loaded.
export { formatLinkPort, formatLinkPortQuery } from "./link_port_lines.ts";

/** The acceptor's name of a `HERD2 LINKPORT <acceptor>` question, or undefined when it is not one. */
export function parseLinkPortQuery(line: string): string | undefined {
  const f = line.split(" ");
  return f.length === 3 && f[0] === "HERD2" && f[1] === "LINKPORT" && NAME.test(f[2])
    ? f[2]
    : undefined;
}

/**
 * The port of a link-port answer from `acceptor` (a line without its LF), or undefined when the
 * line is anything else (an older server's `? ...`, another server's answer, a bad port).
 *
 * @example
 * ```ts
 * parseLinkPort("HERD2 LINKPORT Hill 40123", "Hill"); // 40123
 * parseLinkPort("? HERD2 LINKPORT Hill", "Hill"); // undefined
 * ```
 */
export function parseLinkPort(line: string, acceptor: string): number | undefined {
  const f = line.split(" ");
  if (f.length !== 4 || f[0] !== "HERD2" || f[1] !== "LINKPORT" || f[2] !== acceptor) {
    return undefined;
  }
  const port = /^[1-9][0-9]{0,4}$/.test(f[3]) ? Number(f[3]) : 0;
  return port <= 65535 && port > 0 ? port : undefined;
}

/** Who dials: a neighbouring server, or a read-only observer (a remote dashboard). */
export type Role = "peer" | "observer";

/** Which side a MAC proves: the one that dialled, or the one that accepted. */
export type Prover = "dialler" | "acceptor";

const NONCE = /^[0-9a-f]{32}$/;
const NAME = SERVER_NAME;

/**
 * Whether `name` can be sent as a server or observer name in a HELLO (1-64 of `A-Za-z0-9_.-`).
 *
 * @example
 * ```ts
 * isWireName("dashboard-42"); // true
 * isWireName("two words"); // false
 * ```
 */
export function isWireName(name: string): boolean {
  return NAME.test(name);
}

/** `HERD2 HELLO <role> <from> <to> <nonce>`: the dialler's first line. */
export interface Hello {
  role: Role;
  from: string;
  to: string;
  nonce: string;
}

/**
 * Formats a HELLO line.
 *
 * @example
 * ```ts
 * formatHello({ role: "peer", from: "Hill", to: "Jaquez", nonce: "0".repeat(32) });
 * // "HERD2 HELLO peer Hill Jaquez 000...0\n"
 * ```
 */
export function formatHello(h: Hello): string {
  return `HERD2 HELLO ${h.role} ${h.from} ${h.to} ${h.nonce}\n`;
}

/** The HELLO in a line, or undefined when the line is not a well-formed HELLO. */
export function parseHello(line: string): Hello | undefined {
  const f = splitFields(line);
  if (f.length !== 6 || f[0] !== "HERD2" || f[1] !== "HELLO") return undefined;
  const [, , role, from, to, nonce] = f;
  if (role !== "peer" && role !== "observer") return undefined;
  if (!NAME.test(from) || !NAME.test(to) || !NONCE.test(nonce)) return undefined;
  return { role, from, to, nonce };
}

/**
 * Whether the answer to a HELLO is a client's error reply (`? ...`): the acceptor refused the
 * HELLO itself (malformed, not for it, not a neighbour) and kept a client connection.
 */
export function isInvalidReply(line: string): boolean {
  return splitFields(line)[0] === "?";
}

/** `HERD2 CHALLENGE <acceptor> <dialler> <nonceA> <macA>`: the acceptor's answer to a HELLO. */
export interface Challenge {
  acceptor: string;
  dialler: string;
  nonce: string;
  mac: string;
}

/** Formats a CHALLENGE line. */
export function formatChallenge(c: Challenge): string {
  return `HERD2 CHALLENGE ${c.acceptor} ${c.dialler} ${c.nonce} ${c.mac}\n`;
}

/**
 * The CHALLENGE in a line, or undefined when it is not one (or its nonce is malformed). The
 * names are not checked here: the dialler compares them with whom it dialled.
 */
export function parseChallenge(line: string): Challenge | undefined {
  const f = splitFields(line);
  if (f.length !== 6 || f[0] !== "HERD2" || f[1] !== "CHALLENGE" || !NONCE.test(f[4])) {
    return undefined;
  }
  return { acceptor: f[2], dialler: f[3], nonce: f[4], mac: f[5] };
}

/** Formats the dialler's `HERD2 PROOF <macD>` line. */
export function formatProof(mac: string): string {
  return `HERD2 PROOF ${mac}\n`;
}

/** The MAC of a PROOF line, or undefined when the line is not a PROOF. */
export function parseProof(line: string): string | undefined {
  const f = splitFields(line);
  return f.length === 3 && f[0] === "HERD2" && f[1] === "PROOF" ? f[2] : undefined;
}

/** The acceptor's line when it will not link now because its own connection to the peer wins. */
export const BUSY_LINE = "HERD2 BUSY\n";
/** Whether a line (without its LF) is BUSY. */
export function isBusy(line: string): boolean {
  return line === "HERD2 BUSY";
}

/** The dialler's line when the acceptor's proof is wrong (so the acceptor can log why). */
export const REFUSED_LINE = "HERD2 REFUSED bad proof\n";
/** Whether a line (without its LF) is REFUSED. */
export function isRefused(line: string): boolean {
  return line === "HERD2 REFUSED bad proof";
}

/**
 * The acceptor's last handshake line: peers get `HERD2 WELCOME <acceptor> <dialler>`, observers
 * `HERD2 WATCHING <acceptor>` (then the STATE line).
 */
export function formatWelcome(role: Role, acceptor: string, dialler: string): string {
  return role === "peer"
    ? `HERD2 WELCOME ${acceptor} ${dialler}\n`
    : `HERD2 WATCHING ${acceptor}\n`;
}

/** Whether a line (without its LF) is exactly the WELCOME/WATCHING the dialler waits for. */
export function isWelcome(line: string, role: Role, acceptor: string, dialler: string): boolean {
  return line === formatWelcome(role, acceptor, dialler).slice(0, -1);
}

/**
 * The text a side's MAC covers; both sides build it here, the prover to sign, the other to
 * verify. JSON keeps the fields apart whatever they hold; `prover` is the direction, so the
 * acceptor's MAC can never serve as the dialler's.
 *
 * @example
 * ```ts
 * const nonceD = "5f1b0c2d9e8a7f6b4c3d2e1f0a9b8c7d"; // the dialler's (newNonce())
 * const nonceA = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"; // the acceptor's
 * proofText("peer", "dialler", "Hill", "Jaquez", nonceD, nonceA);
 * // '["HERD2","peer","dialler","Hill","Jaquez","<nonceD>","<nonceA>"]'
 * ```
 */
export function proofText(
  role: Role,
  prover: Prover,
  dialler: string,
  acceptor: string,
  nonceD: string,
  nonceA: string,
): string {
  return JSON.stringify(["HERD2", role, prover, dialler, acceptor, nonceD, nonceA]);
}

// ---------------------------------------------------------------------------------------------
// A link's messages (after the handshake, both directions).

/** `SYNC`: my store's epoch and head, and the mark of yours I hold. Sent first by both sides. */
export const SYNC = "SYNC";
/** `R`: one record, with the sender's sequence number for it. */
export const RECORD = "R";
/** `S`: "you are up to date with me through this sequence number" (records were skipped). */
export const SKIP = "S";
/** `A`: receipt of the peer's records in a sequence-number range (receipts.ts). */
export const RECEIPT = "A";
/** `PING`: a heartbeat, and a round-trip probe to a peer that answers PINGs. */
export const PING = "PING";
/**
 * `PONG`: the answer to a PING, sent only to a peer that announced it understands it (an empty
 * line after its SYNC, which older servers ignore; they drop a link on a line they do not know).
 */
export const PONG = "PONG";
/** `CAUGHTUP`: my catch-up stream to you is complete. */
export const CAUGHTUP = "CAUGHTUP";

/**
 * `HOLD`: "hold your catch-up stream to me until my `DIGEST`" (another neighbour is streaming me
 * the same records), or `GO`: "stream". One of the two answers the SYNC of a peer that announced
 * them (a second empty line after SYNC), and only such a peer gets them.
 */
export const HOLD = "HOLD";
/** `GO`: see {@linkcode HOLD}. */
export const GO = "GO";
/**
 * `DIGEST <salt> <buckets> <first> <hex>`: part of my store's bucket digests (digest.ts); the
 * answer to a whole one is the receiver's own, with the same salt and bucket count.
 */
export const DIGEST = "DIGEST";
/**
 * `TREE <hash>`: "my config's topology hashes to this" (flood_tree.ts): a link whose two ends
 * agree carries a record only to a child in its origin's tree while the herd is healthy. Sent
 * only to a peer that announced it (a third empty line after SYNC).
 */
export const TREE = "TREE";
/**
 * `WARN <server> <n>`: "`server` has a link that is down, catching up, cut, delayed or not
 * agreeing on the trees" (n differs at each of its warnings): the herd floods every record on
 * every link until the warnings stop (flood_health.ts). Passed on once per `server n` not seen in
 * the last 30 s (any n: a forged large one hides nothing; at most 256 kept per server, and past that
 * none passed on); sent only to a peer that announced TREE.
 */
export const WARN = "WARN";

/** The heartbeat line. */
export const PING_LINE = `${PING}\n`;
/** The answer to a PING. */
export const PONG_LINE = `${PONG}\n`;
/** Sent once after SYNC: "I answer PING with PONG". */
export const PONGS_LINE = "\n";
/** Sent once after PONGS_LINE: "I know HOLD and DIGEST" (older servers ignore empty lines). */
export const DIGESTS_LINE = "\n";
/** Sent once after DIGESTS_LINE: "I know TREE and WARN". */
export const TREES_LINE = "\n";
/** The HOLD line. */
export const HOLD_LINE = `${HOLD}\n`;
/** The GO line. */
export const GO_LINE = `${GO}\n`;

/** What a SYNC line says. */
export interface Sync {
  /** The sender's store epoch. */
  epoch: string;
  /** The sender's newest sequence number. */
  head: number;
  /** The receiver's epoch as the sender knows it (`-` when none). */
  yourEpoch: string;
  /** The receiver's last sequence number the sender holds, in `yourEpoch`. */
  mark: number;
}

/** Formats a SYNC line. */
export function formatSync(s: Sync): string {
  return `${SYNC} ${s.epoch} ${s.head} ${s.yourEpoch} ${s.mark}\n`;
}

/**
 * Formats an `R` line: the record's AT fields with the sender's sequence number.
 *
 * @example
 * ```ts
 * formatRecord(7, { origin: "Hill", diff: "+0.5", client: "kiwi", location: "+1+2", time: "3" });
 * // "R 7 Hill +0.5 kiwi +1+2 3\n"
 * ```
 */
export function formatRecord(seq: number, r: AtFields): string {
  return `${RECORD} ${seq} ${r.origin} ${r.diff} ${r.client} ${r.location} ${r.time}\n`;
}

/**
 * The bytes of `head`, an `R` line per record ({@linkcode formatRecord}'s), then `tail`: a link's
 * write, in `buf` when it has room (a view of it), else in a new buffer of the exact size. No
 * line string is built: each record line as a template, the batch as their concatenation and
 * then its flattening were ~3 KB of garbage per update, and a new buffer per write costs more
 * than filling it. Wire text is binary strings, one byte a char (as `binaryToBytes`).
 *
 * @example
 * ```ts
 * const r = { origin: "Hill", diff: "+0.5", client: "kiwi", location: "+1+2", time: "3" };
 * encodeRecords("A 1 2\n", [{ ...r, seq: 7 }], "S 9\n");
 * // the bytes of "A 1 2\nR 7 Hill +0.5 kiwi +1+2 3\nS 9\n"
 * ```
 */
export function encodeRecords(
  head: string,
  records: readonly (AtFields & { seq: number })[],
  tail: string,
  buf?: Uint8Array,
): Uint8Array {
  let size = head.length + tail.length;
  for (const r of records) {
    size += 8 + digits(r.seq) + r.origin.length + r.diff.length + r.client.length +
      r.location.length + r.time.length;
  }
  const out = buf !== undefined && buf.length >= size
    ? buf.subarray(0, size)
    : new Uint8Array(size);
  let at = put(out, 0, head);
  for (const r of records) {
    out[at++] = 0x52; // R
    out[at++] = 0x20;
    const n = digits(r.seq);
    for (let v = r.seq, i = at + n - 1; i >= at; i--, v = Math.floor(v / 10)) {
      out[i] = 0x30 + (v % 10);
    }
    at += n;
    out[at++] = 0x20;
    at = put(out, at, r.origin);
    out[at++] = 0x20;
    at = put(out, at, r.diff);
    out[at++] = 0x20;
    at = put(out, at, r.client);
    out[at++] = 0x20;
    at = put(out, at, r.location);
    out[at++] = 0x20;
    at = put(out, at, r.time);
    out[at++] = 0x0a;
  }
  put(out, at, tail);
  return out;
}

/** Decimal digits of a non-negative integer. */
function digits(n: number): number {
  let d = 1;
  for (let v = n; v >= 10; v = Math.floor(v / 10)) d++;
  return d;
}

/** Copies a binary string's bytes into `out` at `at`; returns where they end. */
function put(out: Uint8Array, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) out[at++] = text.charCodeAt(i);
  return at;
}

/** Formats an `S` line. */
export function formatSkip(seq: number): string {
  return `${SKIP} ${seq}\n`;
}

/** Formats an `A` line: the peer's records `from`..`to` are receipted. */
export function formatReceipt(from: number, to: number): string {
  return `${RECEIPT} ${from} ${to}\n`;
}

/**
 * The `DIGEST` lines of a digest.
 *
 * @example
 * ```ts
 * import { BucketDigest } from "./digest.ts";
 * formatDigest(new BucketDigest(64, 7)); // "DIGEST 00000007 64 0 000...0\n": 64 × 16 hex digits
 * ```
 */
export function formatDigest(d: BucketDigest): string {
  const salt = d.salt.toString(16).padStart(8, "0");
  return digestParts(d).map((p) => `${DIGEST} ${salt} ${p.buckets} ${p.first} ${p.hex}\n`)
    .join("");
}

const SALT = /^[0-9a-f]{8}$/;
const HEX = /^(?:[0-9a-f]{16})+$/;

/** Formats a CAUGHTUP line for a catch-up stream of `n` records. */
export function formatCaughtUp(n: number): string {
  return `${CAUGHTUP} ${n}\n`;
}

/** One message read from a link. */
export type LinkMessage =
  | {
    type: typeof RECORD;
    /** Undefined when the sequence number is not a safe integer (the record is skipped). */
    seq: number | undefined;
    /** The fields as sent, not validated yet. */
    record: AtFields;
  }
  | { type: typeof SKIP; seq: number }
  | { type: typeof RECEIPT; from: number; to: number }
  | { type: typeof PING }
  | { type: typeof PONG }
  | ({ type: typeof SYNC } & Sync)
  | { type: typeof CAUGHTUP }
  | { type: typeof HOLD }
  | { type: typeof GO }
  | ({ type: typeof DIGEST } & DigestPart)
  | { type: typeof TREE; hash: string }
  | { type: typeof WARN; server: string; n: number };

/** Formats a TREE line. */
export function formatTree(hash: string): string {
  return `${TREE} ${hash}\n`;
}

/** Formats a WARN line. */
export function formatWarn(server: string, n: number): string {
  return `${WARN} ${server} ${n}\n`;
}

const TREE_HASH = /^[0-9a-f]{16}$/;

/**
 * Whether a field is a sequence number: digits whose value is a safe integer. A larger one (an
 * `S 10^23`) became a mark printed `1e+23` in our next SYNC, which the peer takes for garbage and
 * drops the link over, at every redial (adv16).
 */
function isSeq(text: string): boolean {
  return INTEGER.test(text) && Number.isSafeInteger(Number(text));
}

/**
 * The message in a link line, or undefined when the line is not a message at all (the peer
 * misbehaved). An `R` line with seven fields is a message even when its fields are invalid:
 * the receiver validates and skips it, and the link goes on.
 *
 * @example
 * ```ts
 * parseLinkLine("S 12"); // { type: "S", seq: 12 }
 * parseLinkLine("HELLO"); // undefined
 * ```
 */
export function parseLinkLine(line: string): LinkMessage | undefined {
  const f = splitFields(line);
  switch (f[0]) {
    case RECORD: {
      if (f.length !== 7) return undefined;
      return {
        type: RECORD,
        seq: isSeq(f[1]) ? Number(f[1]) : undefined,
        record: { origin: f[2], diff: f[3], client: f[4], location: f[5], time: f[6] },
      };
    }
    case SKIP:
      return f.length === 2 && isSeq(f[1]) ? { type: SKIP, seq: Number(f[1]) } : undefined;
    case RECEIPT:
      return f.length === 3 && isSeq(f[1]) && isSeq(f[2])
        ? { type: RECEIPT, from: Number(f[1]), to: Number(f[2]) }
        : undefined;
    case PING:
      return f.length === 1 ? { type: PING } : undefined;
    case PONG:
      return f.length === 1 ? { type: PONG } : undefined;
    case SYNC:
      return f.length === 5 && isSeq(f[2]) && isSeq(f[4])
        ? { type: SYNC, epoch: f[1], head: Number(f[2]), yourEpoch: f[3], mark: Number(f[4]) }
        : undefined;
    case CAUGHTUP:
      return f.length === 2 ? { type: CAUGHTUP } : undefined;
    case HOLD:
      return f.length === 1 ? { type: HOLD } : undefined;
    case GO:
      return f.length === 1 ? { type: GO } : undefined;
    case TREE:
      return f.length === 2 && TREE_HASH.test(f[1]) ? { type: TREE, hash: f[1] } : undefined;
    case WARN:
      return f.length === 3 && NAME.test(f[1]) && isSeq(f[2])
        ? { type: WARN, server: f[1], n: Number(f[2]) }
        : undefined;
    case DIGEST: {
      if (f.length !== 5 || !SALT.test(f[1]) || !INTEGER.test(f[2]) || !INTEGER.test(f[3])) {
        return undefined;
      }
      const buckets = Number(f[2]);
      const first = Number(f[3]);
      // A power of two within bounds; the hex within the buckets.
      if (buckets < 1 || buckets > MAX_BUCKETS || (buckets & (buckets - 1)) !== 0) return undefined;
      if (!HEX.test(f[4]) || first + f[4].length / 16 > buckets) return undefined;
      return { type: DIGEST, salt: parseInt(f[1], 16), buckets, first, hex: f[4] };
    }
  }
  return undefined;
}

/**
 * Where the fields of an `R` line lie in `bytes[start, end)` (no LF), for a reader that compares
 * them in place instead of decoding and splitting the line: fills `at` (8 entries) with each of
 * the seven fields' first byte and, last, `end + 1`, so field k is `[at[k], at[k + 1] - 1)`.
 * Returns the sequence number, or -1 when the line is not in the plain form every sender
 * writes (seven non-empty fields joined by single spaces, no other whitespace, a safe-integer
 * sequence number): such a line is left to {@linkcode parseLinkLine}, which decides about it.
 *
 * @example
 * ```ts
 * const bytes = new TextEncoder().encode("R 7 Hill +0.5 kiwi +1+2 3");
 * const at = new Int32Array(8);
 * recordFieldsAt(bytes, 0, bytes.length, at); // 7; at: [0, 2, 4, 9, 14, 19, 24, 26]
 * ```
 */
export function recordFieldsAt(
  bytes: Uint8Array,
  start: number,
  end: number,
  at: Int32Array,
): number {
  if (end - start < 13 || bytes[start] !== 0x52 || bytes[start + 1] !== 0x20) return -1;
  at[0] = start;
  at[1] = start + 2;
  let field = 1;
  let seq = 0;
  for (let i = start + 2; i < end; i++) {
    const b = bytes[i];
    if (b === 0x20) {
      // An empty field (a run of spaces, or one at the end) or an eighth field: not plain.
      if (i === at[field] || field === 6) return -1;
      at[++field] = i + 1;
    } else if (b <= 0x0d && b >= 0x09) {
      return -1;
    } else if (field === 1) {
      if (b < 0x30 || b > 0x39) return -1;
      seq = seq * 10 + (b - 0x30);
    }
  }
  if (field !== 6 || at[6] === end) return -1;
  at[7] = end + 1;
  return Number.isSafeInteger(seq) ? seq : -1;
}

// ---------------------------------------------------------------------------------------------
// An observer stream (server → observer, after `HERD2 WATCHING`).

/** `STATE <json>`: the server's state, and how many snapshot records follow. */
export const STATE = "STATE";
/** `RECORDS <json array>`: a chunk of the snapshot's records, oldest change first. */
export const RECORDS = "RECORDS";
/**
 * `EVENT <json>`: one event (a batch event carries `count` and its first client IDs only; a
 * catch-up read's records are one `location.batch`).
 */
export const EVENT = "EVENT";
/**
 * `METRICS <json array>`: the server's own metrics (prom-client JSON), at the start and every
 * few seconds, so a remote dashboard shows its counters; older observers ignore the line.
 */
export const METRICS = "METRICS";

/** A record as an observer stream carries it (text fields are binary strings). */
export type ObservedRecord = AtFields;

/** What a STATE line carries. */
export interface ObservedState {
  server: ServerState;
  /** Records inline (older servers); the current ones stream them in RECORDS lines. */
  records?: ObservedRecord[];
  /** How many records follow in RECORDS lines. */
  snapshot?: number;
  observer?: string;
  /** The Places provider's name. */
  places?: string;
}

/** Formats a STATE line (pure-ASCII JSON, so binary strings survive as they are). */
export function formatState(s: ObservedState): string {
  return `${STATE} ${asciiJson(s)}\n`;
}

/** One record's JSON for a RECORDS line (its size decides how many fit in a chunk). */
export function recordJson(r: AtFields): string {
  return asciiJson({
    client: r.client,
    origin: r.origin,
    diff: r.diff,
    location: r.location,
    time: r.time,
  });
}

/** Formats a RECORDS line from records' JSON ({@linkcode recordJson}). */
export function formatRecords(json: readonly string[]): string {
  return `${RECORDS} [${json.join(",")}]\n`;
}

/** Formats an EVENT line (the observer form of the event, see observe.ts). */
export function formatEvent(event: unknown): string {
  return `${EVENT} ${asciiJson(event)}\n`;
}

/** Formats a METRICS line. */
export function formatMetrics(json: unknown): string {
  return `${METRICS} ${asciiJson(json)}\n`;
}

/** One message read from an observer stream. */
export type ObserverMessage =
  | { type: typeof STATE; state: ObservedState }
  | { type: typeof RECORDS; records: ObservedRecord[] }
  | { type: typeof EVENT; event: HerdEvent & { count?: number } }
  | { type: typeof METRICS; metrics: unknown[] };

/**
 * The message in an observer line (a trailing CR is ignored), or undefined when it is none of
 * them. Throws a `SyntaxError` when the JSON is malformed. The JSON's shape is the sender's:
 * a RECORDS line that is not an array reads as no records; the rest is the reader's to check.
 *
 * @example
 * ```ts
 * parseObserverLine('RECORDS [{"client":"kiwi"}]'); // { type: "RECORDS", records: [...] }
 * ```
 */
export function parseObserverLine(line: string): ObserverMessage | undefined {
  if (line.endsWith("\r")) line = line.slice(0, -1);
  const space = line.indexOf(" ");
  if (space < 0) return undefined;
  const body = line.slice(space + 1);
  switch (line.slice(0, space)) {
    case STATE:
      return { type: STATE, state: JSON.parse(body) };
    case RECORDS: {
      const records = JSON.parse(body);
      return { type: RECORDS, records: Array.isArray(records) ? records : [] };
    }
    case EVENT:
      return { type: EVENT, event: JSON.parse(body) };
    case METRICS: {
      const metrics = JSON.parse(body);
      return { type: METRICS, metrics: Array.isArray(metrics) ? metrics : [] };
    }
  }
  return undefined;
}
