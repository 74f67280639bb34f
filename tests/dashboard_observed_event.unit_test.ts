/**
 * boundedEvent (dashboard/observed_event.ts): what a remote dashboard keeps of an event read
 * from a member's observer stream (adversarial review adv15).
 */

import assert from "node:assert/strict";
import { boundedEvent, MAX_EVENT_TEXT, MAX_NAMED } from "../dashboard/observed_event.ts";

Deno.test("boundedEvent: an honest event passes unchanged, as a fresh object", () => {
  const e = { kind: "link.down", t: 1, server: "Hill", peer: "Smith", reason: "closed" };
  const out = boundedEvent(e, "Hill");
  assert.deepEqual(out, e);
  assert.notEqual(out, e);
  const rec = { client: "kiwi", origin: "Hill", diff: "+0.1", location: "+1+1", time: "1.5" };
  const accepted = {
    kind: "location.accepted",
    t: 1,
    server: "Hill",
    from: null,
    record: rec,
    lat: 1,
    lng: 1,
    held: 3,
  };
  assert.deepEqual(boundedEvent(accepted, "Hill"), accepted);
});

Deno.test("boundedEvent: another server's event, no kind, or a stray nested value is dropped", () => {
  assert.equal(boundedEvent({ kind: "server.down", t: 1, server: "Ghost" }, "Hill"), undefined);
  assert.equal(boundedEvent({ t: 1, server: "Hill" }, "Hill"), undefined);
  assert.equal(boundedEvent([1], "Hill"), undefined);
  assert.equal(boundedEvent(null, "Hill"), undefined);
  assert.equal(
    boundedEvent({ kind: "server.down", t: 1, server: "Hill", junk: { a: 1 } }, "Hill"),
    undefined,
  );
  assert.equal(
    boundedEvent({ kind: "server.down", t: 1, server: "Hill", record: {} }, "Hill"),
    undefined,
  );
  const peers = new Array(MAX_NAMED + 1).fill("Smith");
  assert.equal(
    boundedEvent(
      { kind: "receipt.late", t: 1, server: "Hill", client: "c", peers, waitedMs: 1 },
      "Hill",
    ),
    undefined,
  );
});

Deno.test("boundedEvent: long text is cut with its length; a record keeps its five fields only", () => {
  const big = "r".repeat(100_000);
  const out = boundedEvent(
    { kind: "client.connect", t: 1, server: "Hill", conn: 1, remote: big },
    "Hill",
  ) as unknown as { remote: string };
  assert.ok(out.remote.length < MAX_EVENT_TEXT + 40, `${out.remote.length}`);
  assert.match(out.remote, /\.\.\. \(\+98976 bytes\)$/);
  // A line the hub cuts itself is left whole.
  const line = "x".repeat(5_000);
  const inv = boundedEvent({
    kind: "invalid",
    t: 1,
    server: "Hill",
    conn: 1,
    line,
    verb: "other",
    reason: "verb",
  }, "Hill") as unknown as { line: string };
  assert.equal(inv.line, line);
  const rec = {
    client: "kiwi",
    origin: "Hill",
    diff: "+0",
    location: "+1+1",
    time: "1",
    junk: big,
  };
  const acc = boundedEvent({
    kind: "location.accepted",
    t: 1,
    server: "Hill",
    from: null,
    record: rec,
    lat: 1,
    lng: 1,
  }, "Hill") as unknown as { record: object };
  assert.deepEqual(Object.keys(acc.record), ["client", "origin", "diff", "location", "time"]);
  // A `__proto__` key from JSON sets no prototype.
  const proto = boundedEvent(
    JSON.parse('{"kind":"server.down","t":1,"server":"Hill","__proto__":{"x":1}}'),
    "Hill",
  );
  assert.equal(Object.getPrototypeOf(proto), Object.prototype);
});
