/**
 * The few assertions the tests use, on node:assert/strict (JSR's @std/assert is unreachable).
 *
 * @module
 */

import nodeAssert from "node:assert/strict";

/** Deep strict equality. */
export function assertEquals<T>(actual: unknown, expected: T, msg?: string): asserts actual is T {
  nodeAssert.deepStrictEqual(actual, expected, msg);
}

/** Truthiness. */
export function assert(value: unknown, msg?: string): asserts value {
  nodeAssert.ok(value, msg);
}

/** `text` contains `part`. */
export function assertIncludes(text: string, part: string, msg?: string): void {
  nodeAssert.ok(
    text.includes(part),
    msg ?? `expected ${JSON.stringify(text.slice(0, 400))} to include ${JSON.stringify(part)}`,
  );
}

/** `text` matches `re`. */
export function assertMatch(text: string, re: RegExp, msg?: string): void {
  nodeAssert.match(text, re, msg);
}
