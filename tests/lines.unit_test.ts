import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  binaryAt,
  binaryEquals,
  binaryToBytes,
  bytesToBinary,
  LineSplitter,
  OVERLONG_PREFIX,
  utf8ToBinary,
} from "../servers/lines.ts";

Deno.test("binary strings round-trip every byte, short and long, ASCII or not", () => {
  const all = new Uint8Array(256).map((_, i) => i);
  for (
    const bytes of [
      all,
      new Uint8Array(5000).map((_, i) => (i * 7) & 0xff),
      new Uint8Array(4096).fill(65),
    ]
  ) {
    const text = bytesToBinary(bytes);
    assert.deepEqual(text.length, bytes.length);
    assert.deepEqual(binaryToBytes(text), bytes);
  }
  // A long ASCII run with late non-ASCII bytes (the encoder fast path must not mangle them).
  const mixed = "a".repeat(600) + "\xe9\xff" + "b".repeat(10) + "\x80";
  assert.deepEqual([...binaryToBytes(mixed)], [...mixed].map((c) => c.charCodeAt(0)));
  assert.deepEqual(utf8ToBinary("é"), "\xc3\xa9");
});

Deno.test("splitter: lines across chunks, CRLF kept for the parser, partial flush", () => {
  const s = new LineSplitter(64);
  const enc = new TextEncoder();
  assert.deepEqual(s.push(enc.encode("IAM")), []);
  assert.deepEqual(s.push(enc.encode("AT a\r\nWHAT")).map((l) => l.text), ["IAMAT a\r"]);
  assert.deepEqual(s.pending, 4);
  assert.deepEqual(s.push(enc.encode("SAT\n\n")).map((l) => l.text), ["WHATSAT", ""]);
  assert.deepEqual(s.flush(), undefined);
  s.push(enc.encode("tail"));
  assert.deepEqual(s.flush(), { text: "tail", overlong: false });
});

Deno.test("splitter: an overlong line is discarded as it streams; only a prefix is kept", () => {
  const s = new LineSplitter(100);
  const enc = new TextEncoder();
  for (let i = 0; i < 1000; i++) assert.deepEqual(s.push(enc.encode("x".repeat(1000))), []);
  assert.ok(s.discarding);
  assert.deepEqual(s.pending, 0, "nothing of the overlong line is buffered");
  const out = s.push(enc.encode("yyy\nnext\n"));
  assert.deepEqual(out.length, 2);
  assert.ok(out[0].overlong);
  assert.deepEqual(out[0].text, "x".repeat(OVERLONG_PREFIX));
  assert.deepEqual(out[1], { text: "next", overlong: false });
  // Exactly at the limit is fine.
  assert.deepEqual(s.push(enc.encode("z".repeat(100) + "\n"))[0].overlong, false);
  assert.deepEqual(s.push(enc.encode("z".repeat(101) + "\n"))[0].overlong, true);
});

Deno.test("splitter: an overlong line's prefix starts at its first non-whitespace byte; an overlong blank line has none (adversarial review)", () => {
  // The `?` reply echoes the command trimmed of whitespace: 2,000 leading spaces used to fill the
  // kept prefix, so the reply was `? ` with nothing of the command; 70,000 spaces, a blank line,
  // got `? ` instead of no reply.
  const enc = new TextEncoder();
  const ws = " \t\r\f\v";
  const lead = Array.from({ length: 2000 }, (_, i) => ws[i % ws.length]).join("");
  const body = "IAMAT kiwi " + "x".repeat(300);
  for (const split of [1, 7, 1999, 2000, 2001, 5000]) {
    const bytes = enc.encode(lead + body + "\n" + " \t".repeat(400) + "\n" + ws.repeat(300) + "\n");
    const s = new LineSplitter(100);
    const out = [
      ...s.push(bytes.subarray(0, split)),
      ...s.push(bytes.subarray(split)),
    ];
    assert.deepEqual(out.length, 3, `split ${split}`);
    assert.deepEqual(out[0], { text: body, overlong: true }, `split ${split}`);
    // Whitespace only, however long: nothing kept, so the line is blank.
    assert.deepEqual(out[1], { text: "", overlong: true }, `split ${split}`);
    assert.deepEqual(out[2], { text: "", overlong: true }, `split ${split}`);
  }
  // The same at the end of input (EOF or the partial-line timer), and when the overlong line is
  // only found at its LF (the limit's one spare byte held).
  const s = new LineSplitter(100);
  s.push(enc.encode(" ".repeat(3000) + "WHATSAT"));
  assert.deepEqual(s.flush(), { text: "WHATSAT", overlong: true });
  s.push(enc.encode(" ".repeat(100)));
  assert.deepEqual(s.push(enc.encode("y\n")), [{ text: "y", overlong: true }]);
  s.push(enc.encode(" ".repeat(101)));
  assert.deepEqual(s.push(enc.encode("\n")), [{ text: "", overlong: true }]);
});

Deno.test("splitter: a CR before the LF does not count toward the limit, in one read or across reads", () => {
  // A line at the limit sent with CRLF is the same line as with LF (the CR is whitespace); the
  // CR is kept for the parser. One more byte of anything, the CR included, is over.
  const enc = new TextEncoder();
  const at = "z".repeat(100);
  const cases: [string[], boolean][] = [
    [[at + "\r\n"], false],
    [[at, "\r", "\n"], false],
    [[at + "\r", "\n"], false],
    [[at + "x\n"], true],
    [[at, "x\n"], true],
    [[at + "\r\r\n"], true],
    [[at + "\rx\n"], true],
    [[at, "\rx", "\n"], true],
  ];
  for (const [reads, overlong] of cases) {
    const s = new LineSplitter(100);
    const out = reads.flatMap((r) => s.push(enc.encode(r)));
    assert.deepEqual(out.length, 1, JSON.stringify(reads));
    assert.deepEqual(out[0].overlong, overlong, JSON.stringify(reads));
    if (!overlong) assert.deepEqual(out[0].text, at + "\r");
  }
});

Deno.test("splitter: random bytes cut into random reads give the lines a reference split gives", () => {
  // A seeded generator, so a failure can be replayed.
  let seed = 131;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  for (let round = 0; round < 200; round++) {
    const limit = 1 + rand(40);
    // Every byte value, LFs and CRs often, lines from empty to well over the limit.
    const bytes = new Uint8Array(rand(2000)).map(() => {
      const r = rand(8);
      return r === 0 ? 10 : r === 1 ? 13 : rand(256);
    });
    const want: { text: string; overlong: boolean }[] = [];
    let from = 0;
    for (let i = 0; i <= bytes.length; i++) {
      if (i < bytes.length && bytes[i] !== 10) continue;
      if (i === bytes.length && i === from) break;
      const line = [...bytes.subarray(from, i)].map((b) => String.fromCharCode(b)).join("");
      // A CR ending the line may be the one byte past the limit.
      const counted = line.endsWith("\r") ? line.length - 1 : line.length;
      want.push(
        counted > limit
          ? { text: line.replace(/^[ \t\r\f\v]+/, "").slice(0, OVERLONG_PREFIX), overlong: true }
          : { text: line, overlong: false },
      );
      from = i + 1;
    }
    const s = new LineSplitter(limit);
    const got: { text: string; overlong: boolean }[] = [];
    // Reads of random sizes out of one reused buffer at a random offset, as a socket loop does.
    const buf = new Uint8Array(4096);
    for (let at = 0; at < bytes.length;) {
      const n = Math.min(bytes.length - at, 1 + rand(300));
      const off = rand(64);
      buf.set(bytes.subarray(at, at + n), off);
      got.push(...s.push(buf.subarray(off, off + n)));
      buf.fill(0x41);
      at += n;
    }
    const last = s.flush();
    if (last !== undefined) got.push(last);
    assert.deepEqual(got, want, `round ${round}, limit ${limit}`);
  }
});

Deno.test("splitter: a line that arrives a byte a read costs its bytes, not an object per read (adversarial review)", () => {
  // A client that trickles its line one byte per TCP segment (each read returns one byte): the
  // splitter kept a copy per read, ~460 bytes of memory per byte held, so a 64 KiB partial line
  // cost ~30 MiB per connection (40 connections trickling 11 KB each: +153 MiB RSS).
  const bytes = Array.from({ length: 256 }, (_, i) => new Uint8Array([i === 10 ? 32 : i]));
  const splitters = Array.from({ length: 20 }, () => new LineSplitter());
  const before = Deno.memoryUsage().heapUsed;
  for (const s of splitters) {
    for (let i = 0; i < 65_536; i++) assert.equal(s.push(bytes[i & 0xff]).length, 0);
  }
  const grown = Deno.memoryUsage().heapUsed - before;
  // 20 x 64 KiB held: 1.25 MiB of bytes. Before: ~270 MiB.
  assert.ok(grown < 64 * 1024 * 1024, `${(grown / 1048576).toFixed(0)} MiB for 1.25 MiB of lines`);
  for (const s of splitters) {
    assert.equal(s.pending, 65_536);
    const line = s.push(new Uint8Array([10]))[0];
    assert.equal(line.overlong, false);
    assert.equal(line.text.length, 65_536);
    assert.equal(line.text.charCodeAt(300), 300 & 0xff);
    assert.equal(s.pending, 0);
  }
});

Deno.test("splitter: with a raw tag, whole tagged lines come out undecoded with their bounds; the rest as before", () => {
  const s = new LineSplitter(64);
  const chunk = binaryToBytes("R 1 a b c d e\nS 2\nRX\nR 2 \xe9\nR 3 cut");
  const lines = s.push(chunk, 0x52);
  const shown = lines.map((l) =>
    l.end === undefined ? l.text : `raw:${bytesToBinary(chunk.subarray(l.start, l.end))}`
  );
  assert.deepEqual(shown, ["raw:R 1 a b c d e", "S 2", "RX", "raw:R 2 \xe9"]);
  assert.ok(lines.filter((l) => l.end !== undefined).every((l) => l.text === ""));
  // A tagged line split across reads is decoded as any other (the first chunk is gone).
  assert.deepEqual(s.push(binaryToBytes(" f g\n"), 0x52), [
    { text: "R 3 cut f g", overlong: false },
  ]);
  // Overlong tagged lines are discarded as before.
  const long = s.push(binaryToBytes(`R ${"x".repeat(100)}\nR 4\n`), 0x52);
  assert.equal(long[0].overlong, true);
  assert.equal(long[1].end, long[1].start! + 3);
});

Deno.test("binaryAt decodes any bytes at any offset as toString('latin1') does, short fields and long", () => {
  const bytes = Buffer.alloc(256);
  let seed = 3;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let round = 0; round < 20_000; round++) {
    for (let i = 0; i < 64; i++) bytes[i] = Math.floor(next() * 256);
    const start = Math.floor(next() * 32);
    const end = start + Math.floor(next() * 30); // 0..29 bytes: both sides of the 16-byte cut
    const got = binaryAt(bytes, start, end);
    assert.deepEqual(got, bytes.toString("latin1", start, end), `[${start}, ${end})`);
    // Its own string, not a view of the scratch codes: a later decode does not change it.
    const again = binaryAt(bytes, 0, end - start);
    assert.deepEqual(got, bytes.toString("latin1", start, end));
    assert.deepEqual(again.length, end - start);
  }
});

Deno.test("binaryEquals compares bytes with a binary string's chars, lengths first", () => {
  const bytes = binaryToBytes("R kiwi\xe9 x");
  assert.equal(binaryEquals(bytes, 2, 7, "kiwi\xe9"), true);
  assert.equal(binaryEquals(bytes, 2, 7, "kiwi\xe8"), false);
  assert.equal(binaryEquals(bytes, 2, 6, "kiwi\xe9"), false);
  assert.equal(binaryEquals(bytes, 8, 8, ""), true);
});
