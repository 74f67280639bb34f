/**
 * The process's reply-byte budget (servers/output_budget.ts): over budget, a connection is paused
 * when it holds at least an even share among the connections that hold bytes now; one that
 * wrote everything no longer counts in the share, and one that closed is forgotten.
 */
import assert from "node:assert/strict";
import { OutputBudget, type OutputHolder } from "../servers/output_budget.ts";

class Holder implements OutputHolder {
  held = 0;
  progressAt = performance.now();
  woken = 0;
  cutFor: string | undefined;
  constructor(readonly budget: OutputBudget) {}
  hold(delta: number) {
    this.held += delta;
    this.budget.add(this, delta);
  }
  wake() {
    this.woken++;
  }
  cut(reason: string) {
    this.cutFor = reason;
  }
}

Deno.test("output budget: the even share counts only the connections holding bytes now", () => {
  const budget = new OutputBudget(100, 60_000);
  const [a, b, c] = [new Holder(budget), new Holder(budget), new Holder(budget)];
  a.hold(60);
  c.hold(10);
  c.hold(-10); // c wrote everything: it holds nothing and takes no share
  b.hold(45);
  assert.equal(budget.total, 105);
  assert.ok(budget.over);
  // Two hold bytes: the share is 50. a (60) is paused, b (45) is not, c (0) never is.
  assert.equal(budget.paused(a), true);
  assert.equal(budget.paused(b), false);
  assert.equal(budget.paused(c), false);
  // b writes everything: under budget again, and everyone who held bytes is woken.
  b.hold(-45);
  assert.ok(!budget.over);
  assert.ok(a.woken >= 1 && b.woken >= 1);
  // a closes (its bytes released and forgotten); b and c fill up: the share is 50 of two.
  a.held = 0;
  budget.remove(a, 60);
  assert.equal(budget.total, 0);
  b.hold(55);
  c.hold(50);
  assert.equal(budget.paused(b), true);
  assert.equal(budget.paused(c), true);
  c.hold(-50);
  b.hold(-55);
  assert.equal(budget.total, 0);
});
