/**
 * Request heads past our bounds (servers/http_head.ts) get the project's JSON error, `431`, on
 * every HTTP port (the dashboard's, `--ops-port`'s: both are servers/http_front.ts fronts), over
 * real TCP. Found by an adversarial review (adv12a): one 100,000-byte header got hyper's `400`
 * with an empty body; ~400 KB got the connection closed with no answer at all.
 *
 * @module
 */

import assert from "node:assert/strict";
import { serveHttp } from "../servers/http_front.ts";
import { MAX_HEAD_BYTES } from "../servers/http_head.ts";

const enc = new TextEncoder();

/** Sends `bytes` on a fresh connection and reads until the server closes (bounded: 10 s). */
async function exchangeRaw(port: number, bytes: Uint8Array): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), 10_000);
  const chunks: Uint8Array[] = [];
  const reading = (async () => {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (let n; (n = await conn.read(buf)) !== null;) chunks.push(buf.slice(0, n));
    } catch {
      // reset or closed by the timer: what arrived is the answer
    }
  })();
  // Written while reading: the server may answer (and stop reading) before the last byte.
  await conn.write(bytes).catch(() => {});
  await reading;
  clearTimeout(timer);
  try {
    conn.close();
  } catch {
    // already closed
  }
  return new TextDecoder("latin1").decode(
    chunks.reduce((a, b) => Uint8Array.from([...a, ...b]), new Uint8Array()),
  );
}

/** The status and JSON body of each response in `text`, in order. */
function responses(text: string): { status: number; body: string }[] {
  const out = [];
  const re = /HTTP\/1\.1 (\d{3})[^\r]*\r\n([\s\S]*?)\r\n\r\n/g;
  for (let m; (m = re.exec(text)) !== null;) {
    const length = /content-length: (\d+)/i.exec(m[2]);
    const body = length ? text.slice(re.lastIndex, re.lastIndex + Number(length[1])) : "";
    re.lastIndex += body.length;
    out.push({ status: Number(m[1]), body });
  }
  return out;
}

Deno.test("http front: a request head too big or with too many lines is a 431 JSON error, whatever its size; bodies are not heads", async () => {
  const served = serveHttp(
    async (req) => Response.json({ ok: true, got: (await req.text()).length }),
    { hostname: "127.0.0.1", port: 0, label: "test" },
  );
  const port = served.addr.port;
  const host = `Host: 127.0.0.1:${port}\r\n`;
  try {
    for (const size of [100_000, 400_000, 2_000_000, MAX_HEAD_BYTES]) {
      const head = `GET /healthz HTTP/1.1\r\n${host}X-Big: ${"x".repeat(size)}\r\n\r\n`;
      const [r, ...more] = responses(await exchangeRaw(port, enc.encode(head)));
      assert.equal(r?.status, 431, `${size}: ${JSON.stringify(r)}`);
      assert.deepEqual(JSON.parse(r.body), {
        error: `request head larger than ${MAX_HEAD_BYTES} bytes`,
      });
      assert.deepEqual(more, []);
    }
    // Many short header lines: past hyper's own limit (128 fields in Deno 2.9), a bare 400.
    const many = Array.from({ length: 150 }, (_, i) => `X-${i}: y\r\n`).join("");
    const [lines] = responses(
      await exchangeRaw(port, enc.encode(`GET /healthz HTTP/1.1\r\n${host}${many}\r\n`)),
    );
    assert.equal(lines?.status, 431);
    assert.match(JSON.parse(lines.body).error, /^request head of more than 100 lines$/);

    // Keep-alive: a body of 64 KiB holding blank lines is not a head (it passes as it comes),
    // and the request after it is served.
    const body = "a\r\n\r\n".repeat(64 * 1024 / 5);
    const posted = responses(
      await exchangeRaw(
        port,
        enc.encode(
          `POST /x HTTP/1.1\r\n${host}content-length: ${body.length}\r\n\r\n${body}` +
            `GET /healthz HTTP/1.1\r\n${host}Connection: close\r\n\r\n`,
        ),
      ),
    );
    assert.deepEqual(posted.map((r) => r.status), [200, 200]);
    assert.equal(JSON.parse(posted[0].body).got, body.length);
    // Keep-alive: an answered request, then a head too big on the same connection: 200, 431.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(enc.encode(`GET /healthz HTTP/1.1\r\n${host}\r\n`));
      const buf = new Uint8Array(4096);
      const n = await conn.read(buf);
      assert.match(new TextDecoder().decode(buf.subarray(0, n ?? 0)), /^HTTP\/1\.1 200 /);
      await conn.write(enc.encode(`GET /healthz HTTP/1.1\r\n${host}X-Big: ${"x".repeat(20_000)}`));
      let text = "";
      for (let m; (m = await conn.read(buf)) !== null;) {
        text += new TextDecoder().decode(buf.subarray(0, m));
      }
      assert.deepEqual(responses(text).map((r) => r.status), [431]);
    } finally {
      conn.close();
    }

    // Just under the bound: served as before, and LF-only line ends are heads too.
    const fits = `GET /healthz HTTP/1.1\r\n${host}Connection: close\r\nX-Big: ${
      "x".repeat(MAX_HEAD_BYTES - 200)
    }\r\n\r\n`;
    assert.deepEqual(responses(await exchangeRaw(port, enc.encode(fits))).map((r) => r.status), [
      200,
    ]);
    const lf = `GET /healthz HTTP/1.1\n${host.replace("\r\n", "\n")}Connection: close\n\n`;
    assert.deepEqual(responses(await exchangeRaw(port, enc.encode(lf))).map((r) => r.status), [
      200,
    ]);
  } finally {
    await served.close();
  }
});

Deno.test("http front: HTTP/2 with prior knowledge (h2c) is answered, not held as an unfinished head", async () => {
  // After the preface, HTTP/2 sends binary frames with no empty line in them: the head guard
  // held them for good and the request hung until the stall timeout (it was served before the
  // guard).
  const served = serveHttp(() => Response.json({ ok: true }), {
    hostname: "127.0.0.1",
    port: 0,
    label: "test",
  });
  const client = Deno.createHttpClient({ http1: false, http2: true });
  try {
    const r = await fetch(`http://127.0.0.1:${served.addr.port}/x`, {
      client,
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { ok: true });
  } finally {
    client.close();
    await served.close();
  }
});

Deno.test("http front: TLS (or any byte no request starts with) to an HTTP port gets a 400 JSON error at once, not a wait for a head (adversarial review)", async () => {
  // Found by an adversarial review (adv15): a ClientHello (`https://` to the dashboard or to
  // --ops-port) holds no empty line, so the front held it as an unfinished head until the stall
  // timeout: `curl -k https://...` waited 31 s and got nothing, and the connection held a place.
  const served = serveHttp(() => Response.json({ ok: true }), {
    hostname: "127.0.0.1",
    port: 0,
    label: "test",
  });
  const port = served.addr.port;
  try {
    // The start of a TLS 1.2/1.3 ClientHello record, an SSLv2-style hello, a NUL.
    const hello = Uint8Array.from([
      0x16,
      0x03,
      0x01,
      0x02,
      0x00,
      0x01,
      0x00,
      0x01,
      0xfc,
      0x03,
      0x03,
    ]);
    for (const bytes of [hello, Uint8Array.from([0x80, 0x2e, 0x01]), Uint8Array.from([0])]) {
      const started = performance.now();
      const [r, ...more] = responses(await exchangeRaw(port, bytes));
      assert.equal(r?.status, 400, `${bytes[0]}: ${JSON.stringify(r)}`);
      assert.match(JSON.parse(r.body).error, /^not an HTTP\/1 request/);
      assert.deepEqual(more, []);
      // Not the stall timeout (30 s): at once, with room for a loaded machine.
      assert.ok(performance.now() - started < 8_000);
    }
    // A real TLS client fails its handshake instead of waiting.
    const tls = await Deno.connectTls({ hostname: "127.0.0.1", port });
    const timer = setTimeout(() => tls.close(), 8_000);
    await assert.rejects(tls.handshake());
    clearTimeout(timer);
    try {
      tls.close();
    } catch {
      // closed
    }
    // Requests (blank lines before the request line included) are served as before.
    const ok = `\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`;
    assert.equal(responses(await exchangeRaw(port, enc.encode(ok)))[0]?.status, 200);
  } finally {
    await served.close();
  }
});
