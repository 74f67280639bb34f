/**
 * Every size limit of the wire, derived from one definition: the longest client line. A record
 * a server accepts from a client must fit every other line it later travels in (a peer's `R`
 * line, an observer's `EVENT` and snapshot lines, the store), so those limits are computed from
 * the client's, never chosen apart from it. Depends on nothing.
 *
 * @module
 */

/** Longest client line, in bytes, LF excluded (the spec's 64 KiB). */
export const MAX_CLIENT_LINE = 64 * 1024;

/** Longest client ID, in bytes (the spec's limit). */
export const MAX_CLIENT_ID = 256;

/** Longest server name (config.ts checks names against it). */
export const MAX_SERVER_NAME = 64;

/**
 * A server name as a config allows it: the one shape the config, the handshake, the link-port
 * memory and `WARN` lines check names against.
 */
export const SERVER_NAME = new RegExp(`^[A-Za-z0-9_.-]{1,${MAX_SERVER_NAME}}$`);

/** Bytes of an IAMAT line that are not its three fields: the verb and three separators. */
const IAMAT_FRAME = "IAMAT ".length + 2;

/**
 * The three client fields of an IAMAT together (client ID, location, time): what a 64 KiB line
 * leaves for them. Every stored record satisfies this, whoever sent it.
 */
export const MAX_RECORD_FIELDS = MAX_CLIENT_LINE - IAMAT_FRAME;

/** Longest location: the line minus the shortest client ID and time (`IAMAT x <loc> 0`). */
export const MAX_LOCATION = MAX_RECORD_FIELDS - 2;

/** Longest time: the line minus the shortest client ID and location (`IAMAT x +0+0 <time>`). */
export const MAX_TIME = MAX_RECORD_FIELDS - 5;

/**
 * Longest time difference: a sign, the integer part (at most the time's own digits, or the
 * clock's eleven, plus one for a carry), a point and nine digits.
 */
export const MAX_DIFF = 1 + Math.max(MAX_TIME, 11) + 1 + 1 + 9;

/** Digits of the largest sequence number (a safe integer). */
const MAX_SEQ_DIGITS = String(Number.MAX_SAFE_INTEGER).length;

/**
 * Longest peer line: `R <seq> <origin> <diff> <client> <location> <time>` for the largest
 * record. Links read with this limit, so no record a server stored can ever be "overlong" for a
 * neighbour.
 */
export const MAX_PEER_LINE = "R ".length + MAX_SEQ_DIGITS + 1 + MAX_SERVER_NAME + 1 + MAX_DIFF +
  3 + MAX_RECORD_FIELDS;

/**
 * Longest JSON of one record on an observer stream: ASCII JSON escapes each non-ASCII or control
 * byte as `\u00XX` (6 bytes), and only the client ID and origin can hold such bytes (the rest
 * are digits, signs and points); 128 bytes cover the keys, quotes and the rest of the object.
 */
export const MAX_RECORD_JSON = 6 * (MAX_CLIENT_ID + MAX_SERVER_NAME) + MAX_DIFF + MAX_LOCATION +
  MAX_TIME + 128;

/** Target size of one observer snapshot chunk (`RECORDS` line); one record may exceed it. */
export const OBSERVER_CHUNK = 256 * 1024;

/**
 * Longest observer line: a snapshot chunk plus the record that crossed the target, or one event
 * (events carry at most one record's fields in full; batches are summarised, see observe.ts).
 */
export const MAX_OBSERVER_LINE = OBSERVER_CHUNK + MAX_RECORD_JSON + 1024;
