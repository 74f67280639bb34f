/** dashboard/security.ts (and the token choice in app.ts): loopback hosts, own origins, tokens. */

import assert from "node:assert/strict";
import { checkControl, isLoopbackHost, ownOrigins } from "../dashboard/security.ts";
import { resolveToken } from "../dashboard/app.ts";

Deno.test("security: origins and tokens", () => {
  assert.ok(
    isLoopbackHost("127.0.0.1") && isLoopbackHost("localhost") && isLoopbackHost("::1") &&
      isLoopbackHost("[::1]"),
  );
  assert.ok(!isLoopbackHost("0.0.0.0") && !isLoopbackHost("192.0.2.1"));
  assert.deepEqual(resolveToken("127.0.0.1"), undefined);
  assert.deepEqual(resolveToken("127.0.0.1", "given"), "given");
  assert.deepEqual(resolveToken("0.0.0.0")?.length, 32);
  assert.deepEqual(resolveToken("0.0.0.0", "env-token"), "env-token");
  const loop = ownOrigins({ host: "127.0.0.1", port: 8000 }, "evil.example:8000");
  assert.ok(loop.has("http://localhost:8000") && loop.has("http://127.0.0.1:8000"));
  assert.ok(
    !loop.has("http://evil.example:8000"),
    "DNS rebinding: a loopback dashboard ignores Host",
  );
  const wild = ownOrigins({ host: "0.0.0.0", port: 8000 }, "box.lan:8000");
  assert.ok(wild.has("http://box.lan:8000"));
  const req = (h: Record<string, string>) =>
    new Request("http://box.lan:8000/api/command", { method: "POST", headers: h });
  const opts = { host: "0.0.0.0", port: 8000, token: "t0k" };
  assert.deepEqual(
    checkControl(req({ origin: "http://box.lan:8000", host: "box.lan:8000" }), opts)?.status,
    401,
  );
  assert.deepEqual(
    checkControl(
      req({ origin: "http://box.lan:8000", host: "box.lan:8000", authorization: "Bearer t0k" }),
      opts,
    ),
    null,
  );
  assert.deepEqual(
    checkControl(
      req({ origin: "http://other:8000", host: "box.lan:8000", authorization: "Bearer t0k" }),
      opts,
    )?.status,
    403,
  );
});
