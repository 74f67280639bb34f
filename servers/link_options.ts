/**
 * Links' tunables and their defaults, apart from peers.ts (which re-exports them) so that the
 * options table (servers/options.ts, loaded before `server NAME` listens) does not load the links'
 * whole graph.
 *
 * @module
 */

/** Tunables for links. */
export interface LinkOptions {
  /** Send a heartbeat after this long without writing; a link silent 3× this long is dead. */
  heartbeatMs: number;
  /** First redial delay (jittered ±25%); doubles while the neighbour stays away. */
  backoffMinMs: number;
  /** Redial delay cap. */
  backoffMaxMs: number;
  /** Records per batch written to the socket. */
  batchRecords: number;
  /**
   * Fewest records a neighbour's catch-up stream must bring (and a quarter of its head at least)
   * for us to ask it to `HOLD` while another neighbour streams us the same records: below that,
   * the two digests cost more than the duplicates they spare.
   */
  holdMinRecords: number;
}

/** Default link tunables. */
export const DEFAULT_LINK_OPTIONS: LinkOptions = {
  heartbeatMs: 1000,
  backoffMinMs: 25,
  backoffMaxMs: 1000,
  batchRecords: 2048,
  holdMinRecords: 4096,
};
