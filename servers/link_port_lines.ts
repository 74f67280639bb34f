/**
 * The lines of the link-port question (servers/link_port.ts), re-exported by wire.ts with every
 * other peer line. A module of their own, importing nothing: `server NAME` answers the question
 * from its early listener (cli/early_listen.ts) before the rest of the program has loaded.
 *
 * @module
 */

/**
 * `HERD2 LINKPORT <acceptor>`: asked on a server's client port, the port its links and observers
 * dial (servers/link_port.ts), so that no neighbour holds a connection to the client port.
 *
 * @example
 * ```ts
 * formatLinkPortQuery("Hill"); // "HERD2 LINKPORT Hill\n"
 * ```
 */
export function formatLinkPortQuery(acceptor: string): string {
  return `HERD2 LINKPORT ${acceptor}\n`;
}

/** The answer to a link-port question: `HERD2 LINKPORT <acceptor> <port>`. */
export function formatLinkPort(acceptor: string, port: number): string {
  return `HERD2 LINKPORT ${acceptor} ${port}\n`;
}
