/**
 * servers/memory_conn.ts: the in-memory connection of in-process links behaves as a socket where
 * the link code relies on it: bytes in order and copied, the writes of one turn read at once,
 * a bound on unread bytes that holds when the reader stops (and lets writes on when it reads
 * again), EOF and errors at either end's close, and concurrent writes never interleaved.
 */

import assert from "node:assert/strict";
import { MEMORY_CONN_BYTES, memoryConnPair } from "../servers/memory_conn.ts";
import { writeAll } from "../servers/io.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** Whether `p` settled within a few turns of the event loop. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(() => (done = true), () => (done = true));
  for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 0));
  return done;
}

/** What one read of `conn` returns, as text (EOF: null). */
async function readOnce(conn: Deno.Conn): Promise<string | null> {
  const buf = new Uint8Array(1024);
  const n = await conn.read(buf);
  return n === null ? null : text(buf.subarray(0, n));
}

/** Reads until `n` bytes came or EOF. */
async function readBytes(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await conn.read(out.subarray(got));
    if (r === null) break;
    got += r;
  }
  return out.subarray(0, got);
}

Deno.test("memory conn: bytes both ways, in order, copied at the write", async () => {
  const [a, b] = memoryConnPair();
  const buf = bytes("HERD2 HELLO\n");
  const write = a.write(buf);
  buf.fill(0); // the writer reuses its buffer once the write returned
  assert.equal(await write, 12);
  assert.equal(await readOnce(b), "HERD2 HELLO\n");
  await writeAll(b, bytes("WELCOME\n"));
  assert.equal(await readOnce(a), "WELCOME\n");
  a.close();
  b.close();
});

Deno.test("memory conn: a pending read wakes once and takes every write of the turn", async () => {
  const [a, b] = memoryConnPair();
  const buf = new Uint8Array(1024);
  const reading = b.read(buf);
  // Three writes in one synchronous run: one read on the other side.
  a.write(bytes("R 1\n"));
  a.write(bytes("R 2\n"));
  a.write(bytes("R 3\n"));
  const n = await reading;
  assert.equal(text(buf.subarray(0, n!)), "R 1\nR 2\nR 3\n");
  // A read smaller than what is pending takes what fits; the rest waits for the next read.
  await a.write(bytes("abcdef"));
  assert.equal(await b.read(buf.subarray(0, 4)), 4);
  assert.equal(await b.read(buf), 2);
  assert.equal(text(buf.subarray(0, 2)), "ef");
  a.close();
  b.close();
});

Deno.test("memory conn: a reader that stops reading holds the writer at the bound", async () => {
  const bound = 64 * 1024;
  const [a, b] = memoryConnPair(bound);
  const chunk = new Uint8Array(10_000).fill(7);
  // Writes to a reader that never reads: accepted up to the bound, then the writer waits.
  let accepted = 0;
  let blocked: Promise<number> | undefined;
  for (let i = 0; i < 100; i++) {
    const w = a.write(chunk);
    if (!(await settled(w))) {
      blocked = w;
      break;
    }
    accepted += await w;
  }
  assert.ok(blocked !== undefined, "a write past the bound waits");
  assert.equal(accepted, 6 * chunk.length, "the writes that fit whole are done");
  // A second writer queues behind the first: nothing grows while the reader sleeps.
  const second = a.write(bytes("after"));
  assert.equal(await settled(second), false);
  // What is held is exactly the bound (the waiting write's first part), not a byte more.
  const held = new Uint8Array(4 * bound);
  assert.equal(await b.read(held), bound);
  // The reader drains: the writers go on, in order, and every byte arrives once.
  const total = 7 * chunk.length + 5;
  const rest = await readBytes(b, total - bound);
  assert.equal(await blocked, chunk.length, "a write resolves whole, once all of it is in");
  assert.equal(await second, 5);
  const all = new Uint8Array(total);
  all.set(held.subarray(0, bound));
  all.set(rest, bound);
  assert.ok(all.subarray(0, 7 * chunk.length).every((x) => x === 7));
  assert.equal(text(all.subarray(7 * chunk.length)), "after");
  a.close();
  b.close();
});

Deno.test("memory conn: two writes waiting on a full pipe arrive each whole, in order", async () => {
  // Found by a review: the first waiting write got the room a read made, was resolved with
  // part of its bytes and left the queue, so the rest of it (writeAll's next write) went in
  // behind the second write: A×30 B×10 A×20.
  const [a, b] = memoryConnPair(100);
  await a.write(new Uint8Array(100).fill(0x2e));
  const first = writeAll(a, new Uint8Array(50).fill(0x41));
  const second = writeAll(a, new Uint8Array(10).fill(0x42));
  // Reads of 30 bytes: each frees less room than the first write needs.
  let got = "";
  const small = new Uint8Array(30);
  while (got.length < 160) got += text(small.subarray(0, (await b.read(small))!));
  await Promise.all([first, second]);
  assert.equal(got.slice(100), "A".repeat(50) + "B".repeat(10));
  a.close();
  b.close();
});

Deno.test("memory conn: the default bound is a socket buffer's order, and writeAll waits on it", async () => {
  assert.ok(MEMORY_CONN_BYTES >= 64 * 1024 && MEMORY_CONN_BYTES <= 1024 * 1024);
  const [a, b] = memoryConnPair();
  const big = new Uint8Array(3 * MEMORY_CONN_BYTES).map((_, i) => i % 251);
  const writing = writeAll(a, big);
  assert.equal(await settled(writing), false, "writeAll of 3x the bound waits for the reader");
  const got = await readBytes(b, big.length);
  await writing;
  assert.deepEqual(got, big);
  a.close();
  b.close();
});

Deno.test("memory conn: close is EOF for the peer after its bytes; its writes then fail", async () => {
  const [a, b] = memoryConnPair();
  await a.write(bytes("last words\n"));
  a.close();
  assert.equal(await readOnce(b), "last words\n");
  assert.equal(await readOnce(b), null);
  await assert.rejects(b.write(bytes("x")), Deno.errors.BrokenPipe);
  // The closed end: every call fails as on a closed socket.
  const buf = new Uint8Array(64);
  await assert.rejects(a.read(buf), Deno.errors.BadResource);
  await assert.rejects(a.write(buf), Deno.errors.BadResource);
  assert.throws(() => a.close(), Deno.errors.BadResource);
  b.close();
});

Deno.test("memory conn: closing ends a pending read here (Interrupted) and one there (EOF)", async () => {
  const [a, b] = memoryConnPair();
  const buf = new Uint8Array(16);
  const ours = a.read(buf);
  const theirs = b.read(new Uint8Array(16));
  a.close();
  await assert.rejects(ours, Deno.errors.Interrupted);
  assert.equal(await theirs, null);
  b.close();
});

Deno.test("memory conn: writes waiting at the bound fail when the reader closes", async () => {
  const [a, b] = memoryConnPair(1024);
  await a.write(new Uint8Array(1024));
  const waiting = a.write(new Uint8Array(10));
  assert.equal(await settled(waiting), false);
  b.close();
  await assert.rejects(waiting, Deno.errors.BrokenPipe);
  await assert.rejects(a.write(new Uint8Array(1)), Deno.errors.BrokenPipe);
  a.close();
});

Deno.test("memory conn: closeWrite is EOF for the peer, which can still answer", async () => {
  const [a, b] = memoryConnPair();
  await a.write(bytes("IAMAT x +1+1 1\n"));
  await a.closeWrite();
  await assert.rejects(a.write(bytes("more")), Deno.errors.BrokenPipe);
  const got = await readBytes(b, 1024);
  assert.equal(text(got), "IAMAT x +1+1 1\n");
  await b.write(bytes("AT ...\n"));
  assert.equal(await readOnce(a), "AT ...\n");
  a.close();
  b.close();
});

Deno.test("memory conn: the streams carry the same bytes", async () => {
  const [a, b] = memoryConnPair();
  const writer = a.writable.getWriter();
  await writer.write(bytes("one\n"));
  await writer.write(bytes("two\n"));
  await writer.close();
  const got = await new Response(b.readable).text();
  assert.equal(got, "one\ntwo\n");
  a.close();
});

Deno.test("memory conn: addresses name the pair, not a socket", () => {
  const [a, b] = memoryConnPair();
  assert.equal(a.remoteAddr.hostname, "memory");
  assert.equal(a.remoteAddr.port, b.localAddr.port);
  a.close();
  b.close();
});
