/** dashboard/security.ts (and the token choice in app.ts): loopback hosts, own origins, tokens. */

import { assert, assertEquals } from "./_helpers/assert.ts";
import { checkControl, isLoopbackHost, ownOrigins } from "../dashboard/security.ts";
import { resolveToken } from "../dashboard/app.ts";

Deno.test("security: origins and tokens", () => {
  assert(
    isLoopbackHost("127.0.0.1") && isLoopbackHost("localhost") && isLoopbackHost("::1") &&
      isLoopbackHost("[::1]"),
  );
  assert(!isLoopbackHost("0.0.0.0") && !isLoopbackHost("192.0.2.1"));
  assertEquals(resolveToken("127.0.0.1"), undefined);
  assertEquals(resolveToken("127.0.0.1", "given"), "given");
  assertEquals(resolveToken("0.0.0.0")?.length, 32);
  assertEquals(resolveToken("0.0.0.0", "env-token"), "env-token");
  const loop = ownOrigins({ host: "127.0.0.1", port: 8000 }, "evil.example:8000");
  assert(loop.has("http://localhost:8000") && loop.has("http://127.0.0.1:8000"));
  assert(!loop.has("http://evil.example:8000"), "DNS rebinding: a loopback dashboard ignores Host");
  const wild = ownOrigins({ host: "0.0.0.0", port: 8000 }, "box.lan:8000");
  assert(wild.has("http://box.lan:8000"));
  const req = (h: Record<string, string>) =>
    new Request("http://box.lan:8000/api/command", { method: "POST", headers: h });
  const opts = { host: "0.0.0.0", port: 8000, token: "t0k" };
  assertEquals(
    checkControl(req({ origin: "http://box.lan:8000", host: "box.lan:8000" }), opts)?.status,
    401,
  );
  assertEquals(
    checkControl(
      req({ origin: "http://box.lan:8000", host: "box.lan:8000", authorization: "Bearer t0k" }),
      opts,
    ),
    null,
  );
  assertEquals(
    checkControl(
      req({ origin: "http://other:8000", host: "box.lan:8000", authorization: "Bearer t0k" }),
      opts,
    )?.status,
    403,
  );
});
