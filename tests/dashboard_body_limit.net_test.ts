/**
 * Request bodies at the dashboard's control routes are bounded. Found by the second adversarial
 * review: `POST /api/command` read and JSON-parsed the whole body before checking the command's
 * length, so a request with the dashboard's Origin (any local program can send one; a loopback
 * dashboard needs no token) and a 150 MiB body took ~570 MB of the herd's memory and stalled
 * every server of a `start` process for ~2.8 s; a body declared as 1 GiB got no answer at all
 * while the server waited for it.
 */

import assert from "node:assert/strict";
import { serveDashboard } from "../dashboard/app.ts";
import { DemoHerd } from "../dashboard/dev/demo_herd.ts";
import { closeAfter } from "../servers/timeout.ts";
import { closeQuietly } from "../servers/io.ts";

/** Sends the head of a POST declaring `declared` body bytes plus a short start of the body; the status line read back within `ms`, or null. */
async function statusOfHugePost(
  port: number,
  path: string,
  declared: number,
  ms: number,
): Promise<string | null> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = closeAfter(conn, ms);
  try {
    const head = `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
      `Origin: http://127.0.0.1:${port}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${declared}\r\n\r\n{"server":"Hill","line":"IAMAT aaaa`;
    await conn.write(new TextEncoder().encode(head));
    const buf = new Uint8Array(4096);
    const n = await conn.read(buf);
    if (n === null) return null;
    return new TextDecoder().decode(buf.subarray(0, n)).split("\r\n")[0];
  } catch {
    return null; // closed by the timer: no answer
  } finally {
    timer.clear();
    closeQuietly(conn);
  }
}

/** A demo herd with TCP ports and its dashboard, for the length of `fn`. */
async function withDashboard(fn: (url: string) => Promise<void>): Promise<void> {
  const herd = new DemoHerd({ tcp: true });
  await herd.start();
  const d = await serveDashboard(herd, {
    host: "127.0.0.1",
    port: 0,
    quiet: true,
    assets: { built: false, islands: {}, chunks: [], styleUrl: "/static/style.css" },
  });
  try {
    await fn(d.url);
  } finally {
    await d.close();
    await herd.stop();
  }
}

Deno.test("dashboard: a control POST declaring a body far larger than any command gets 413 at once", () =>
  withDashboard(async (url) => {
    const port = Number(new URL(url).port);
    for (const path of ["/api/command", "/api/links/Hill/Jaquez", "/api/servers/Hill/stop"]) {
      // A command is at most 64 KiB; a 1 GiB body can only be an attack. Answered before the
      // body arrives (it never does here), not after buffering it.
      const status = await statusOfHugePost(port, path, 1024 * 1024 * 1024, 5000);
      assert.match(String(status), /^HTTP\/1\.1 413 /, `${path}: ${status ?? "no answer in 5 s"}`);
    }
  }));

Deno.test("dashboard: a chunked control body is cut off at the bound; a real command still works", () =>
  withDashboard(async (url) => {
    const origin = new URL(url).origin;
    // 64 MiB offered in 64 KiB chunks with no Content-Length: refused once past the bound.
    let sent = 0;
    const chunk = new TextEncoder().encode(" ".repeat(64 * 1024));
    const body = new ReadableStream<Uint8Array>({
      pull(ctl) {
        if (sent >= 64 * 1024 * 1024) return ctl.close();
        sent += chunk.length;
        ctl.enqueue(chunk);
      },
    });
    const res = await fetch(`${url}/api/command`, {
      method: "POST",
      headers: { origin, "content-type": "application/json" },
      body,
    });
    assert.equal(res.status, 413);
    assert.match((await res.json() as { error: string }).error, /body over \d+ bytes/);
    assert.ok(sent < 8 * 1024 * 1024, `${sent} bytes taken before the refusal`);

    // A command near the herd's line limit, every byte escaped in JSON, is under the bound.
    const line = `IAMAT ${"\u00e9".repeat(30_000)} +1+1 1`;
    const ok = await fetch(`${url}/api/command`, {
      method: "POST",
      headers: { origin, "content-type": "application/json" },
      body: JSON.stringify({ server: "Hill", line }).replace(/\u00e9/g, "\\u00e9"),
    });
    assert.notEqual(ok.status, 413);
    await ok.body?.cancel();
  }));
