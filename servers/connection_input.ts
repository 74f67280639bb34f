/**
 * One budget for the bytes of unfinished client lines held in this process (each connection's
 * line splitter keeps its partial line, up to the 64 KiB line limit, until its LF comes).
 *
 * The line limit bounds one connection, not twenty thousand: 2,500 connections that had each
 * sent 64 KB without a LF held 119 MB of unfinished lines (a client that sends a byte every few
 * hundred ms keeps the partial-line timer from taking its line), and the descriptor budget
 * admits ~20,000 connections (1.3 GB). Over the budget, a connection whose
 * unfinished line passes `smallLine` bytes is closed: one that sends ordinary commands holds a
 * few hundred bytes at most and is never touched. The reply side has its own budget
 * (output_budget.ts).
 *
 * @module
 */

/** Defaults: 128 MiB for the process (2,048 full 64 KiB lines); 16 KiB counts as small. */
export const DEFAULT_INPUT_BUDGET = { bytes: 128 * 1024 * 1024, smallLine: 16 * 1024 };

/**
 * The process's budget for unfinished input lines.
 *
 * @example
 * ```ts
 * import { inputBudget } from "./connection_input.ts";
 * let held = 0;
 * const pending = 40_000; // the splitter's partial line after a read
 * inputBudget.add(pending - held);
 * held = pending;
 * if (inputBudget.refuses(held)) console.log("close: unfinished line over the input budget");
 * inputBudget.add(-held); // closed
 * ```
 */
export class InputBudget {
  bytes: number;
  smallLine: number;
  #total = 0;
  /** Connections closed for it so far (for tests and logs). */
  cuts = 0;

  constructor(bytes = DEFAULT_INPUT_BUDGET.bytes, smallLine = DEFAULT_INPUT_BUDGET.smallLine) {
    this.bytes = bytes;
    this.smallLine = smallLine;
  }

  /** Bytes of unfinished lines held now, all connections together. */
  get total(): number {
    return this.#total;
  }

  /** A connection holds `delta` more bytes of its unfinished line (negative: fewer). */
  add(delta: number): void {
    this.#total += delta;
  }

  /** True when a connection holding `held` bytes of an unfinished line must be closed. */
  refuses(held: number): boolean {
    return held > this.smallLine && this.#total > this.bytes;
  }
}

/** The one budget of this process. */
export const inputBudget: InputBudget = new InputBudget();
