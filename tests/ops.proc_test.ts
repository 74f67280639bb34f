/**
 * The ops endpoint: /metrics (parsed with a Prometheus text parser), /healthz and /status, through
 * `app.request()` on an in-process herd, and over real HTTP on a real `server` process with
 * `--ops-port` after traffic and with a link down. (The failed disk write is in
 * disk_faults_test.ts, beside the other tmpfs tests.)
 *
 * @module
 */

import assert from "node:assert/strict";
import { Herd } from "../servers/herd.ts";
import { parseConfig } from "../servers/config.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";
import { HerdMetrics } from "../servers/ops/metrics.ts";
import { Hono } from "hono";
import {
  createOpsApp,
  jsonErrors,
  type Ops,
  type OpsHealth,
  type OpsStatus,
  serveOps,
} from "../servers/ops/app.ts";
import { VERSION } from "../servers/version.ts";
import { FAILURE_REASONS, INVALID_REASONS } from "../servers/reasons.ts";
import type { InvalidEvent } from "../servers/events.ts";
import { exchange, freePorts, waitFor } from "./_helpers/net.ts";
import { ProcessHerd, PROCS_SECRET } from "./_helpers/procs.ts";
import { RemoteHerd } from "../dashboard/remote_herd.ts";
import { createDashboard } from "../dashboard/app.ts";
import { leasePorts } from "./_helpers/ports.ts";
import { parseExposition } from "./_helpers/prom.ts";
import { rawRequest } from "./_helpers/http_raw.ts";

const SECRET = "ops-test-secret-0123456789";

/** Two linked servers, A and B, in this process, with their ops state. */
async function startPair(): Promise<{ herd: Herd; ops: Ops; close(): Promise<void> }> {
  const [a, b] = freePorts(2);
  const config = parseConfig({
    servers: { A: { port: a, neighbors: ["B"] }, B: { port: b } },
  });
  const herd = new Herd(config, {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: SECRET,
    whatsatGraceMs: 0,
  });
  const metrics = new HerdMetrics(herd, { version: VERSION });
  const ops: Ops = { source: herd, metrics, version: VERSION, startedAt: Date.now() };
  await herd.start();
  await waitFor(() => herd.servers.get("A")!.links[0].up, 5000, "A-B up");
  return {
    herd,
    ops,
    async close() {
      metrics.close();
      await herd.stop();
    },
  };
}

Deno.test("ops app: /metrics, /healthz and /status answer from the herd (app.request)", async () => {
  const t = await startPair();
  const invalid: InvalidEvent[] = [];
  t.herd.bus.subscribe((e) => e.kind === "invalid" && invalid.push(e));
  try {
    const ops = createOpsApp(t.ops);
    const app = {
      request: (path: string) => ops.request(path, { headers: { host: "127.0.0.1:9100" } }),
    };
    // DNS rebinding: a page on another name that resolves here is refused.
    const rebound = await ops.request("/status", { headers: { host: "evil.example:9100" } });
    assert.equal(rebound.status, 421);
    assert.equal((await ops.request("/metrics")).status, 421, "no Host, no answer");
    for (const host of ["localhost:9100", "[::1]:9100", "10.0.0.7"]) {
      assert.equal((await ops.request("/healthz", { headers: { host } })).status, 200, host);
    }
    const port = t.herd.servers.get("A")!.port;
    assert.match(await exchange(port, "IAMAT ops.a +34.068930-118.445127 1700000000\n"), /^AT A /);
    const bad = [
      ["IAMAT k +91+0 1", "bad-location", "IAMAT"],
      ["WHATSAT nobody 10 5", "unknown-client", "WHATSAT"],
      ["iamat k +1+1 1", "unknown-verb", "other"],
    ];
    for (const [line] of bad) {
      // The reply is exactly `? <line>`: the reason goes to events, logs and metrics only.
      assert.equal(await exchange(port, `${line}\n`), `? ${line}\n`);
    }
    await waitFor(() => invalid.length === 3, 5000, "three invalid events");
    assert.deepEqual(
      invalid.map((e) => [e.line, e.reason, e.verb]),
      bad,
      "each invalid command's event carries its reason",
    );

    const res = await app.request("/metrics");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
    const m = parseExposition(await res.text());
    assert.equal(
      m.value("herd_commands_total", { server: "A", verb: "IAMAT", result: "ok", reason: "" }),
      1,
    );
    for (const [, reason, verb] of bad) {
      assert.equal(
        m.value("herd_commands_total", { server: "A", verb, result: "invalid", reason }),
        1,
        `${verb} ${reason}`,
      );
    }
    // Every reason a verb can have starts at 0; nothing outside the closed set appears.
    for (const s of m.all("herd_commands_total")) {
      assert.ok(
        s.labels.reason === "" || INVALID_REASONS.includes(s.labels.reason as never) ||
          FAILURE_REASONS.includes(s.labels.reason as never),
        s.labels.reason,
      );
    }
    assert.equal(
      m.value("herd_commands_total", {
        server: "B",
        verb: "WHATSAT",
        result: "invalid",
        reason: "bad-radius",
      }),
      0,
    );
    assert.equal(m.value("herd_iamat_duration_seconds_count", { server: "A" }), 1);
    assert.equal(m.value("herd_updates_accepted_total", { server: "B", from: "A" }), 1);
    assert.equal(m.value("herd_propagation_delay_seconds_count", { server: "B" }), 1);
    assert.equal(m.value("herd_records", { server: "B" }), 1);
    assert.equal(m.value("herd_link_up", { server: "A", peer: "B" }), 1);
    assert.equal(m.value("herd_link_records_behind", { server: "A", peer: "B" }), 0);
    assert.equal(m.value("herd_build_info", { version: VERSION }), 1);
    assert.equal(m.value("herd_peer_rejected_total", { server: "A", reason: "bad-proof" }), 0);
    assert.equal(
      m.value("herd_client_refused_total", { server: "A", reason: "max-connections" }),
      0,
    );
    assert.equal(m.types.get("herd_places_upstream_requests_total"), "COUNTER");

    // A label value from outside (a Places status) is escaped, and reads back exactly.
    t.herd.bus.emit({
      kind: "whatsat",
      t: Date.now(),
      server: "A",
      client: "c",
      radiusKm: 1,
      bound: 1,
      provider: "offline",
      status: 'a"b\\c\nd',
      count: 0,
      latencyMs: 1,
      coalesced: false,
    });
    const escaped = parseExposition(await (await app.request("/metrics")).text());
    assert.equal(
      escaped.value("herd_places_requests_total", {
        server: "A",
        provider: "offline",
        status: 'a"b\\c\nd',
      }),
      1,
    );

    const health = await app.request("/healthz");
    assert.equal(health.status, 200);
    const h = await health.json() as OpsHealth;
    assert.equal(h.status, "ok");
    assert.deepEqual(h.servers.map((s) => [s.server, s.listening, s.writable]), [
      ["A", true, true],
      ["B", true, true],
    ]);

    await waitFor(
      () => t.herd.servers.get("A")!.linkStats()[0].rttMs !== null,
      10_000,
      "a round trip on A-B",
    );
    const status = await (await app.request("/status")).json() as OpsStatus;
    assert.equal(status.version, VERSION);
    assert.ok(status.uptimeSeconds >= 0);
    const a = status.servers.find((s) => s.name === "A")!;
    assert.equal(a.address, `127.0.0.1:${port}`);
    assert.equal(a.records, 1);
    assert.equal(a.links.length, 1);
    assert.equal(a.links[0].peer, "B");
    assert.equal(a.links[0].state, "up");
    assert.ok(a.links[0].rttMs !== null && a.links[0].rttMs >= 0);
    assert.equal(a.links[0].behind, 0);
    assert.ok(Date.parse(a.links[0].lastChange!) <= Date.now());

    // A stopped server is unhealthy, with the reason.
    await t.herd.stopServer("B");
    const down = await app.request("/healthz");
    assert.equal(down.status, 503);
    assert.deepEqual((await down.json() as OpsHealth).reasons, ["B is not listening"]);
    assert.equal((await app.request("/nope")).status, 404);
  } finally {
    await t.close();
  }
});

Deno.test("ops app: /healthz is unhealthy once the last resort survived an uncaught error", async () => {
  const t = await startPair();
  try {
    let uncaught = 0;
    const app = createOpsApp({ ...t.ops, uncaught: () => uncaught });
    const health = () => app.request("/healthz", { headers: { host: "127.0.0.1:9100" } });
    assert.equal((await health()).status, 200);
    // What cli/last_resort.ts counts: a bug's state is unknown, so a monitor should restart.
    uncaught = 2;
    const res = await health();
    assert.equal(res.status, 503);
    const body: OpsHealth = await res.json();
    assert.equal(body.status, "unhealthy");
    assert.equal(body.reasons.length, 1, body.reasons.join("; "));
    assert.match(body.reasons[0], /^2 uncaught error\(s\) survived at the last resort/);
  } finally {
    await t.close();
  }
});

Deno.test("ops app: /status uptime ignores a wall-clock step", async () => {
  const t = await startPair();
  const wall = Date.now;
  try {
    // As cli/run.ts makes it: both clocks read at start.
    const app = createOpsApp({ ...t.ops, startedAt: Date.now(), startedMono: performance.now() });
    const uptime = async () =>
      ((await (await app.request("/status", { headers: { host: "127.0.0.1:9100" } }))
        .json()) as OpsStatus).uptimeSeconds;
    Date.now = () => wall() - 3_600_000; // stepped back an hour
    const back = await uptime();
    Date.now = () => wall() + 3_600_000; // then on an hour
    const on = await uptime();
    assert.ok(back >= 0 && back < 600, `uptime ${back} s after a step back`);
    assert.ok(on >= 0 && on < 600, `uptime ${on} s after a step on`);
  } finally {
    Date.now = wall;
    await t.close();
  }
});

Deno.test("ops app: a handler that throws is one escaped line on stderr and a JSON 500", async () => {
  const app = new Hono();
  jsonErrors(app, "test");
  app.get("/*", () => {
    throw new Error("thrown\x1b[2J\nsecond line");
  });
  const printed: string[] = [];
  const consoleError = console.error;
  console.error = (...args: unknown[]) => void printed.push(args.map(String).join(" "));
  try {
    // The path is the client's, its percent-escapes decoded: it reached the terminal as ESC.
    const res = await app.request("/x%1b%5b2Jy");
    assert.equal(res.status, 500);
    assert.deepEqual(await res.json(), { error: "internal error" });
  } finally {
    console.error = consoleError;
  }
  assert.equal(printed.length, 1, printed.join("\n"));
  assert.ok(!/[\x00-\x1f]/.test(printed[0]), JSON.stringify(printed[0]));
  assert.match(
    printed[0],
    /^test: GET \/x\\u001b\[2Jy: Error: thrown\\u001b\[2J\\nsecond line$/,
  );
});

Deno.test("ops endpoint over HTTP: other methods get 405 JSON with Allow, OPTIONS 204; HEAD is the GET's head, its length included", async () => {
  const t = await startPair();
  const served = serveOps(t.ops, "127.0.0.1", 0);
  try {
    for (const path of ["/metrics", "/healthz", "/status"]) {
      for (const method of ["PUT", "POST", "DELETE", "PATCH"]) {
        const res = await rawRequest(served.port, path, { method, body: "" });
        assert.equal(res.status, 405, `${method} ${path}`);
        assert.equal(res.headers["allow"], "GET, HEAD, OPTIONS", `${method} ${path}`);
        assert.match(res.headers["content-type"], /^application\/json/);
        assert.match(JSON.parse(res.body).error, new RegExp(`${method} is not allowed`));
      }
      const options = await rawRequest(served.port, path, { method: "OPTIONS" });
      assert.equal(options.status, 204, `OPTIONS ${path}`);
      assert.equal(options.headers["allow"], "GET, HEAD, OPTIONS");
      assert.equal(options.body, "");

      const get = await rawRequest(served.port, path);
      const head = await rawRequest(served.port, path, { method: "HEAD" });
      assert.equal(head.status, get.status, `HEAD ${path}`);
      assert.equal(head.headers["content-type"], get.headers["content-type"], `HEAD ${path}`);
      assert.equal(head.body, "");
      const getLength = Number(get.headers["content-length"]);
      assert.equal(getLength, get.body.length, `GET ${path} has a length`);
      const headLength = Number(head.headers["content-length"]);
      // /healthz is the same body every time; /metrics and /status carry times and counts
      // whose digits can change between two requests, never by more than a few bytes.
      if (path === "/healthz") assert.equal(headLength, getLength);
      else {assert.ok(
          Math.abs(headLength - getLength) < 64,
          `HEAD ${path}: ${headLength} vs ${getLength}`,
        );}
    }
    // An unknown path is still 404, whatever the method.
    assert.equal((await rawRequest(served.port, "/nope", { method: "PUT", body: "" })).status, 404);
    assert.equal((await rawRequest(served.port, "/nope", { method: "HEAD" })).status, 404);
  } finally {
    await served.close();
    await t.close();
  }
});

// Third adversarial review: Hosts no browser sends got 200 (`127.0.0.1:25290@evil.com`,
// `evil.com:80:25290`: any name with a colon passed). Host is now host[:port] or [v6][:port],
// parsed by the same function as the dashboard's check.
Deno.test("ops endpoint over HTTP: Host is parsed strictly (host[:port], bracketed IPv6); anything else is 421", async () => {
  const t = await startPair();
  const served = serveOps(t.ops, "127.0.0.1", 0);
  const p = served.port;
  try {
    const refused = [
      `127.0.0.1:${p}@evil.com`,
      `evil.com:80:${p}`,
      `evil.com:${p}`,
      `user@127.0.0.1:${p}`,
      `127.0.0.1:${p}/x`,
      `::1`,
      `::1:${p}`,
      `[::1]evil.com`,
      `127.0.0.1:99999`,
      `127.0.0.1:`,
      `999.0.0.1:${p}`,
      `1.2.3.4.5:${p}`,
      `127.0.0.1 :${p}`,
      ``,
    ];
    for (const host of refused) {
      const res = await rawRequest(p, "/healthz", { host });
      assert.equal(res.status, 421, `Host ${JSON.stringify(host)}: ${res.body.slice(0, 100)}`);
      assert.match(JSON.parse(res.body).error, /Host does not name this endpoint/);
    }
    const allowed = [`127.0.0.1:${p}`, "127.0.0.1", `LOCALHOST:${p}`, `[::1]:${p}`, "10.0.0.7"];
    for (const host of allowed) {
      const res = await rawRequest(p, "/healthz", { host });
      assert.equal(res.status, 200, `Host ${JSON.stringify(host)}: ${res.body.slice(0, 100)}`);
    }
  } finally {
    await served.close();
    await t.close();
  }
});

Deno.test("ops endpoint: a real server process answers /metrics, /healthz and /status, link down included", async () => {
  const herd = await ProcessHerd.create({ topology: { Ops1: ["Ops2"], Ops2: ["Ops1"] } });
  const [opsPort] = leasePorts(1);
  const url = `http://127.0.0.1:${opsPort}`;
  const get = async (path: string) => {
    const res = await fetch(`${url}${path}`);
    return { status: res.status, text: await res.text() };
  };
  try {
    await herd.start("Ops1", ["--ops-port", String(opsPort)]);
    await herd.start("Ops2");
    await herd.waitLinksUp();
    const port = herd.port("Ops1");
    for (let i = 0; i < 3; i++) {
      assert.match(await exchange(port, `IAMAT ops.p${i} +1+2 ${1700000000 + i}\n`), /^AT Ops1 /);
    }
    assert.equal(await exchange(port, "IAMAT x +1+2 1e9\n"), "? IAMAT x +1+2 1e9\n");

    // Metrics: parsed, with the server's own counts and the process's runtime metrics.
    let m = parseExposition((await get("/metrics")).text);
    const ok = { server: "Ops1", verb: "IAMAT", result: "ok", reason: "" };
    assert.equal(m.value("herd_commands_total", ok), 3);
    assert.equal(
      m.value("herd_commands_total", { ...ok, result: "invalid", reason: "bad-time" }),
      1,
    );
    assert.equal(m.value("herd_records", { server: "Ops1" }), 3);
    assert.equal(m.value("herd_records", { server: "Ops2" }), undefined, "only this process");
    assert.ok(m.value("process_resident_memory_bytes")! > 0);
    // The records' group commit lands off the reply's path (no --sync-ack): on a slow disk its
    // fdatasync can still be running at the first scrape.
    await waitFor(
      async () =>
        (parseExposition((await get("/metrics")).text)
          .value("herd_persist_commit_duration_seconds_count", { server: "Ops1" }) ?? 0) >= 1,
      10_000,
      "a group commit in /metrics",
    );
    assert.equal(m.value("herd_build_info", { version: VERSION }), 1);

    const health = await get("/healthz");
    assert.equal(health.status, 200);
    assert.equal((JSON.parse(health.text) as OpsHealth).status, "ok");
    await waitFor(
      async () => {
        const s = JSON.parse((await get("/status")).text) as OpsStatus;
        return s.servers[0].links[0].rttMs !== null;
      },
      10_000,
      "a round trip in /status",
    );
    let status = JSON.parse((await get("/status")).text) as OpsStatus;
    assert.deepEqual(status.servers.map((s) => s.name), ["Ops1"]);
    assert.equal(status.servers[0].records, 3);
    assert.equal(status.servers[0].address, `127.0.0.1:${port}`);
    assert.deepEqual(
      status.servers[0].links.map((l) => [l.peer, l.state, l.behind]),
      [["Ops2", "up", 0]],
    );

    // The neighbour dies: the link is down, what Ops1 stores meanwhile is behind, and the
    // process is still healthy (its own server listens and writes).
    await herd.kill("Ops2");
    await waitFor(
      async () => {
        const s = JSON.parse((await get("/status")).text) as OpsStatus;
        return s.servers[0].links[0].state === "down";
      },
      10_000,
      "link down in /status",
    );
    for (let i = 0; i < 2; i++) {
      assert.match(await exchange(port, `IAMAT ops.q${i} +1+2 ${1700000100 + i}\n`), /^AT Ops1 /);
    }
    status = JSON.parse((await get("/status")).text) as OpsStatus;
    const link = status.servers[0].links[0];
    assert.equal(link.state, "down");
    assert.equal(link.behind, 2);
    assert.equal(link.rttMs, null);
    assert.equal((await get("/healthz")).status, 200);
    m = parseExposition((await get("/metrics")).text);
    assert.equal(m.value("herd_link_up", { server: "Ops1", peer: "Ops2" }), 0);
    assert.equal(m.value("herd_link_records_behind", { server: "Ops1", peer: "Ops2" }), 2);
    assert.equal(
      m.value("herd_link_transitions_total", { server: "Ops1", peer: "Ops2", state: "down" }),
      1,
    );
  } finally {
    await herd.close();
  }
});

Deno.test("remote dashboard: /metrics shows each server process's own counters, from before it started", async () => {
  const herd = await ProcessHerd.create({ topology: { Rm1: ["Rm2"], Rm2: ["Rm1"] } });
  let remote: RemoteHerd | undefined;
  let dash: ReturnType<typeof createDashboard> | undefined;
  try {
    await herd.startAll();
    await herd.waitLinksUp();
    // Traffic before any dashboard exists.
    for (let i = 0; i < 4; i++) {
      assert.match(
        await exchange(herd.port("Rm1"), `IAMAT rm.${i} +1+2 ${1700000000 + i}\n`),
        /^AT /,
      );
    }
    assert.equal(await exchange(herd.port("Rm2"), "WHATSAT rm.0 0 5\n"), "? WHATSAT rm.0 0 5\n");
    remote = new RemoteHerd(parseConfig(JSON.parse(await Deno.readTextFile(herd.configPath))), {
      secret: PROCS_SECRET,
      observer: "ops-test",
      minBackoffMs: 50,
    });
    remote.start();
    dash = createDashboard(remote, { host: "127.0.0.1", port: 8000 });
    const app = dash.app;
    const req = (path: string) => app.request(path, { headers: { host: "127.0.0.1:8000" } });
    const scrape = async () => parseExposition(await (await req("/metrics")).text());
    let m = await scrape();
    await waitFor(
      async () => {
        m = await scrape();
        return m.value("herd_records", { server: "Rm2" }) === 4 &&
          m.value("herd_commands_total", {
              server: "Rm1",
              verb: "IAMAT",
              result: "ok",
              reason: "",
            }) ===
            4;
      },
      15_000,
      "both servers' own metrics",
    );
    assert.equal(
      m.value("herd_commands_total", {
        server: "Rm2",
        verb: "WHATSAT",
        result: "invalid",
        reason: "bad-radius",
      }),
      1,
    );
    assert.equal(m.value("herd_updates_accepted_total", { server: "Rm2", from: "Rm1" }), 4);
    assert.equal(m.value("herd_iamat_duration_seconds_count", { server: "Rm1" }), 4);
    assert.equal(m.value("herd_build_info", { version: VERSION }), 1);
    assert.equal(m.value("herd_dashboard_subscribers"), 0);
    // The remote /status and /healthz read the watched servers.
    const status = await (await req("/status")).json() as OpsStatus;
    assert.deepEqual(status.servers.map((s) => s.name).sort(), ["Rm1", "Rm2"]);
    assert.equal((await req("/healthz")).status, 200);
  } finally {
    dash?.close();
    await remote?.stop();
    await herd.close();
  }
});
