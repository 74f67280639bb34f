/**
 * "Did you mean" for misspelt names (flags, config keys): the closest known name by edit
 * distance, when it is close enough to be a likely typo.
 *
 * @module
 */

/** Levenshtein distance (insert, delete, substitute), case-insensitive. */
function distance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}

/**
 * The known name closest to `word`, or undefined when none is within a third of its length
 * (at least 2 edits), so unrelated words get no hint.
 *
 * @example
 * ```ts
 * closest("neighbours", ["port", "host", "neighbors"]); // "neighbors"
 * ```
 */
export function closest(word: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const k of known) {
    const d = distance(word, k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best;
}

/**
 * ` (did you mean "x"?)` for the closest known name, or "".
 *
 * @example
 * ```ts
 * didYouMean("neighbours", ["neighbors"]); // ' (did you mean "neighbors"?)'
 * ```
 */
export function didYouMean(word: string, known: Iterable<string>, prefix = ""): string {
  const c = closest(word, known);
  return c === undefined ? "" : ` (did you mean ${JSON.stringify(prefix + c)}?)`;
}
