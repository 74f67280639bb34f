/**
 * Closed sets of reasons: why a command was invalid, why a peer or client connection was refused.
 * Metrics label series with them (a label must never take an unbounded set of values), logs and
 * the dashboard show them. No imports: the protocol core and the event types both use them.
 *
 * @module
 */

/**
 * Why a command is invalid. The wire reply is `? <line>` whatever the reason.
 */
export type InvalidReason =
  /** The first field is neither IAMAT nor WHATSAT (verbs are case-sensitive). */
  | "unknown-verb"
  /** IAMAT or WHATSAT with other than 3 arguments. */
  | "arity"
  /** The line is over the line limit. */
  | "too-long"
  /** The client ID is over its cap. */
  | "bad-client"
  /** The location or time is over its cap (the record would not fit a peer line). */
  | "field-too-long"
  /** The location is not ISO 6709 `±lat±lng` in range. */
  | "bad-location"
  /** The time is not `digits[.digits]`. */
  | "bad-time"
  /** The time is further ahead of the server clock than --max-future-s. */
  | "future-time"
  /** The WHATSAT radius is not a decimal in (0, 50]. */
  | "bad-radius"
  /** The WHATSAT bound is not an integer in [0, 20]. */
  | "bad-bound"
  /** WHATSAT for a client the server has no record of. */
  | "unknown-client";

/** Every {@linkcode InvalidReason}, in a fixed order (metrics start each at 0). */
export const INVALID_REASONS: readonly InvalidReason[] = [
  "unknown-verb",
  "arity",
  "too-long",
  "bad-client",
  "field-too-long",
  "bad-location",
  "bad-time",
  "future-time",
  "bad-radius",
  "bad-bound",
  "unknown-client",
];

/**
 * Why a valid command still got `?`: a bug (`internal`), --sync-ack and a failing disk
 * (`not-durable`), or an IAMAT the process's record budget has no room for (`full`:
 * --max-records-mib; a new client, or a record that grows).
 */
export type FailureReason = "internal" | "not-durable" | "full";

/** Every {@linkcode FailureReason}. */
export const FAILURE_REASONS: readonly FailureReason[] = ["internal", "not-durable", "full"];

/**
 * Whether a `?` was for a valid command that failed ({@linkcode FailureReason}), not an invalid one.
 *
 * @example
 * ```ts
 * isFailure("full"); // true
 * isFailure("bad-time"); // false
 * ```
 */
export function isFailure(reason: string | undefined): reason is FailureReason {
  return FAILURE_REASONS.includes(reason as FailureReason);
}

/** Why a peer (or observer) connection was refused: the kinds of `peer.rejected` reasons. */
export type PeerRejectReason =
  | "malformed"
  | "wrong-server"
  | "unknown-server"
  | "not-neighbour"
  | "bad-proof"
  | "timeout"
  | "refused"
  | "tls"
  | "garbage"
  | "other";

/** Every {@linkcode PeerRejectReason}. */
export const PEER_REJECT_REASONS: readonly PeerRejectReason[] = [
  "malformed",
  "wrong-server",
  "unknown-server",
  "not-neighbour",
  "bad-proof",
  "timeout",
  "refused",
  "tls",
  "garbage",
  "other",
];

/**
 * The kind of a `peer.rejected` reason text (the texts are listed in docs/protocol.md; a new
 * one falls under `other` until it is added here).
 *
 * @example
 * ```ts
 * peerRejectReason("bad proof from Hill"); // "bad-proof"
 * ```
 */
export function peerRejectReason(text: string): PeerRejectReason {
  if (/^malformed /.test(text)) return "malformed";
  if (/^handshake for /.test(text)) return "wrong-server";
  if (/^unknown server /.test(text)) return "unknown-server";
  if (/ is not a neighbour$/.test(text)) return "not-neighbour";
  if (/^bad proof from | rejected our proof$/.test(text)) return "bad-proof";
  if (/^handshake timeout/.test(text)) return "timeout";
  if (/ refused our HELLO$/.test(text)) return "refused";
  if (/^TLS |^handshake on the plain port/.test(text)) return "tls";
  if (/^unexpected /.test(text)) return "garbage";
  return "other";
}

/** Why a client connection was refused. */
export type ClientRefuseReason = "max-connections" | "descriptors" | "other";

/** Every {@linkcode ClientRefuseReason}. */
export const CLIENT_REFUSE_REASONS: readonly ClientRefuseReason[] = [
  "max-connections",
  "descriptors",
  "other",
];

/**
 * The kind of a `client.refused` reason text.
 *
 * @example
 * ```ts
 * clientRefuseReason("too many open connections"); // "descriptors"
 * ```
 */
export function clientRefuseReason(text: string): ClientRefuseReason {
  if (text === "too many connections") return "max-connections";
  if (text === "too many open connections") return "descriptors";
  return "other";
}
