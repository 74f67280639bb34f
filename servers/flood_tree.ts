/**
 * The flood's spanning trees (pure: no I/O). A record floods from its origin (the server whose
 * AT line it is) to every server; over the config's graph a full flood sends it on every link
 * but the one it came on, `2·links − (servers − 1)` record lines per update (8 in the seed herd),
 * where a spanning tree needs `servers − 1` (4). Every server computes, from the same config, the
 * same breadth-first tree per origin (neighbours visited in name order), and while the herd is
 * healthy (servers/flood_health.ts) a link sends a record only to a neighbour that is its child in
 * its origin's tree. The config hash says whether two servers computed the same trees.
 *
 * @module
 */

/** A server of the config: its name and its neighbours (links are undirected). */
export interface TreeNode {
  name: string;
  neighbors: readonly string[];
}

/**
 * The canonical topology of a config (names and undirected links, sorted) hashed to 16 hex digits:
 * two servers whose hashes match compute the same trees. Not a secret, not a MAC: a check.
 *
 * @example
 * ```ts
 * topologyHash([{ name: "A", neighbors: ["B"] }, { name: "B", neighbors: ["A"] }]).length; // 16
 * ```
 */
export function topologyHash(nodes: readonly TreeNode[]): string {
  const edges = new Set<string>();
  for (const n of nodes) {
    for (const m of n.neighbors) edges.add(n.name < m ? `${n.name} ${m}` : `${m} ${n.name}`);
  }
  const text = [...nodes.map((n) => n.name)].sort().join(",") + "|" + [...edges].sort().join(",");
  // Two 32-bit FNV-1a passes with different offsets: 64 bits, plenty for a consistency check.
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x01000193) ^ (h2 >>> 13);
  }
  return (h1 >>> 0).toString(16).padStart(8, "0") + (h2 >>> 0).toString(16).padStart(8, "0");
}

/**
 * Each server's parent in the breadth-first tree rooted at `origin` (the origin itself and
 * servers it cannot reach have none). Ties (two servers of one depth next to a server) go to the
 * name that sorts first, so every server computes the same tree.
 *
 * @example
 * ```ts
 * const nodes = [
 *   { name: "A", neighbors: ["B", "C"] },
 *   { name: "B", neighbors: ["A", "D"] },
 *   { name: "C", neighbors: ["A", "D"] },
 *   { name: "D", neighbors: ["B", "C"] },
 * ];
 * treeParents(nodes, "A").get("D"); // "B"
 * ```
 */
export function treeParents(nodes: readonly TreeNode[], origin: string): Map<string, string> {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const parent = new Map<string, string>();
  if (!byName.has(origin)) return parent;
  const seen = new Set([origin]);
  let level = [origin];
  while (level.length > 0) {
    const next: string[] = [];
    // Parents in name order, their neighbours in name order: the first to reach a server adopts it.
    for (const name of [...level].sort()) {
      for (const m of [...(byName.get(name)?.neighbors ?? [])].sort()) {
        if (seen.has(m) || !byName.has(m)) continue;
        seen.add(m);
        parent.set(m, name);
        next.push(m);
      }
    }
    level = next;
  }
  return parent;
}

/**
 * One server's view of the trees: for each neighbour, the origins whose tree does NOT make it our
 * child (a healthy herd's link skips their records). Origins outside the config are in no set:
 * their records are flooded as before.
 *
 * @example
 * ```ts
 * const nodes = [
 *   { name: "A", neighbors: ["B", "C"] },
 *   { name: "B", neighbors: ["A", "C"] },
 *   { name: "C", neighbors: ["A", "B"] },
 * ];
 * const t = new FloodTrees(nodes, "B");
 * t.skips("C").has("A"); // true: C is A's child, not ours, in A's tree
 * t.skips("C").has("B"); // false
 * ```
 */
export class FloodTrees {
  readonly hash: string;
  #skips = new Map<string, Set<string>>();

  constructor(nodes: readonly TreeNode[], me: string) {
    this.hash = topologyHash(nodes);
    const mine = nodes.find((n) => n.name === me)?.neighbors ?? [];
    for (const peer of mine) this.#skips.set(peer, new Set());
    for (const origin of nodes.map((n) => n.name)) {
      const parent = treeParents(nodes, origin);
      for (const peer of mine) if (parent.get(peer) !== me) this.#skips.get(peer)!.add(origin);
    }
  }

  /** Origins whose records a healthy link to `peer` does not carry (empty for a stranger). */
  skips(peer: string): ReadonlySet<string> {
    return this.#skips.get(peer) ?? new Set();
  }
}
