/**
 * servers/http_head.ts's HeadGuard, fed in every split: what it passes on is exactly what came,
 * heads whole, bodies as they come; a head over the bounds is refused wherever it is cut.
 */

import assert from "node:assert/strict";
import { HeadGuard, type HeadRefusal, MAX_HEAD_BYTES } from "../servers/http_head.ts";

const enc = new TextEncoder();
const dec = new TextDecoder("latin1");

/** Feeds `text` in pieces of `step` bytes; the bytes passed on, or the refusal. */
function run(guard: HeadGuard, text: string, step: number): string | HeadRefusal {
  const bytes = enc.encode(text);
  let out = "";
  for (let i = 0; i < bytes.length; i += step) {
    const r = guard.feed(bytes.subarray(i, i + step));
    if (!Array.isArray(r)) return r;
    for (const part of r) out += dec.decode(part);
  }
  return out;
}

Deno.test("head guard: passes every byte on, whatever the split; holds only an unfinished head", () => {
  const body = "x\r\n\r\ny".repeat(50);
  const stream = "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n" +
    `POST /p HTTP/1.1\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
    "GET /lf HTTP/1.1\nHost: a\n\n" +
    "GET /mixed HTTP/1.1\r\nHost: a\n\r\n";
  for (const step of [1, 2, 3, 7, 64, stream.length]) {
    assert.equal(run(new HeadGuard(), stream, step), stream, `step ${step}`);
  }
  const guard = new HeadGuard();
  assert.deepEqual(guard.feed(enc.encode("GET / HTTP/1.1\r\nHost: a\r\n")), []);
  const rest = guard.feed(enc.encode("\r\n"));
  assert.ok(Array.isArray(rest));
  assert.equal(rest.map((p) => dec.decode(p)).join(""), "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
});

Deno.test("head guard: a head over the byte or line bound is refused at any split; chunked turns it off", () => {
  for (const step of [1, 100, 100_000]) {
    const big = run(
      new HeadGuard(1000, 10),
      `GET / HTTP/1.1\r\nX: ${"y".repeat(1000)}\r\n\r\n`,
      step,
    );
    assert.deepEqual(
      big,
      { refused: "request head larger than 1000 bytes", status: 431 },
      `step ${step}`,
    );
    const lines = run(
      new HeadGuard(1000, 10),
      `GET / HTTP/1.1\r\n${"A: b\r\n".repeat(11)}\r\n`,
      step,
    );
    assert.deepEqual(
      lines,
      { refused: "request head of more than 10 lines", status: 431 },
      `step ${step}`,
    );
    // Exactly at the bounds: passed on.
    const fits = `GET / HTTP/1.1\r\n${"A: b\r\n".repeat(9)}\r\n`;
    assert.equal(run(new HeadGuard(fits.length, 10), fits, step), fits);
  }
  // After a head this does not follow (chunked), bytes pass unguarded: hyper's limits apply.
  const chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + "z".repeat(5000);
  assert.equal(run(new HeadGuard(1000, 10), chunked, 100), chunked);
});

Deno.test("head guard: a head trickled a byte at a time holds about its own size, not a copy per read", () => {
  // A slowloris client sends one byte per segment: every read is one byte. Each held read was a
  // Uint8Array of its own (~13 KB of heap per byte held: 64 such heads of 16,000 bytes grew the
  // heap by ~200 MB); the bound on a head is meant to bound what a connection holds.
  const bytes = new Uint8Array(64 * 1024).fill(65);
  const guards: HeadGuard[] = [];
  const before = Deno.memoryUsage();
  for (let g = 0; g < 64; g++) {
    const guard = new HeadGuard();
    guards.push(guard);
    for (let i = 0; i < 16_000; i++) assert.deepEqual(guard.feed(bytes.subarray(i, i + 1)), []);
  }
  const after = Deno.memoryUsage();
  const grown = after.heapUsed + after.external - before.heapUsed - before.external;
  // 64 heads of 16 KiB are 1 MiB; the bound leaves room for the collector's timing.
  assert.ok(grown < 32 * 2 ** 20, `64 trickled heads grew the heap by ${grown >> 20} MiB`);
  assert.equal(guards.length, 64);
});

Deno.test("head guard: reading a head's fields costs time linear in its size (no backtracking on a field of spaces)", () => {
  // A field value of 16,000 spaces between two letters made the field regex backtrack: ~0.3 s of
  // the JS thread per head (the herd's own thread), and a client may pipeline such heads on one
  // connection without waiting for answers. 30 of them took ~10 s; linear, a few ms. The bound
  // is loose for a loaded box: it tells linear from quadratic, not fast from slow.
  const head = `GET / HTTP/1.1\r\nHost: a\r\nX: a${" ".repeat(16_000)}b\r\n\r\n`;
  assert.ok(head.length <= MAX_HEAD_BYTES);
  const stream = enc.encode(head.repeat(30));
  const guard = new HeadGuard();
  const t0 = performance.now();
  const out = guard.feed(stream);
  const ms = performance.now() - t0;
  assert.ok(Array.isArray(out));
  assert.equal(out.reduce((n, p) => n + p.length, 0), stream.length);
  assert.ok(ms < 2_000, `30 heads with a long run of spaces took ${Math.round(ms)} ms`);
  // A length with spaces and tabs around it is still read: the body after it is no head (a
  // head of 200 bytes would be refused here).
  assert.deepEqual(
    run(
      new HeadGuard(100, 10),
      `POST / HTTP/1.1\r\nContent-Length: \t200 \r\n\r\n${"x".repeat(200)}`,
      7,
    ),
    `POST / HTTP/1.1\r\nContent-Length: \t200 \r\n\r\n${"x".repeat(200)}`,
  );
});
