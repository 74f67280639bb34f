/**
 * The dashboard's edges over real HTTP, with requests written byte for byte on a raw socket (so
 * paths are not normalised, like `curl --path-as-is`, and `Host` says what the test wants):
 *
 * - static files: a table of hostile paths (`file:` URLs, absolute paths, `..` in every encoding,
 *   backslashes, NUL, symlinks out of static/, directories, a FIFO) never reads outside static/;
 * - Host check: every route answers only to the names of the address it listens on, or names
 *   given with `--dashboard-allowed-hosts`; anything else (DNS rebinding) gets 421 and JSON.
 *
 * Both run against the in-process dashboard (`start`) and the remote one (`dashboard`), in this
 * process with a temp static dir, and as the real CLI processes with the repository's static/.
 */

import assert from "node:assert/strict";
import { parseHerdFlags, UsageError } from "../cli/flags.ts";
import { rawRequest, type RawResponse } from "./_helpers/http_raw.ts";
import { freePorts, startSeedHerd, type TestHerd, waitFor } from "./_helpers/net.ts";
import { RemoteHerd } from "../dashboard/remote_herd.ts";
import { type DashboardOptions, serveDashboard, type ServedDashboard } from "../dashboard/app.ts";
import { DemoHerd } from "../dashboard/dev/demo_herd.ts";
import { spawnDashboard, taskFlags } from "./_helpers/task_flags.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const SECRET = "test-secret-0123456789";
/** Text that must never come back: /etc/passwd, files beside static/, the herd secret. */
const LEAKS = [/root:[^:]*:0:0:/, /LEAK-MARKER/, /"tasks"/, /cfg-secret-must-not-leak/];

function assertNoLeak(target: string, r: RawResponse): void {
  for (const re of LEAKS) {
    assert.ok(!re.test(r.body), `${target} leaked ${re}: ${r.body.slice(0, 200)}`);
  }
}

/** Expects the dashboard's own 404 with a JSON error. */
function assertNotFound(target: string, r: RawResponse): void {
  assertNoLeak(target, r);
  assert.deepEqual(r.status, 404, `${target}: ${r.status} ${r.body.slice(0, 200)}`);
  assert.match(r.headers["content-type"] ?? "", /^application\/json/, target);
  assert.deepEqual(typeof JSON.parse(r.body).error, "string", target);
}

/**
 * Hostile paths that need nothing but a file outside static/: `outside` is its absolute path and
 * `rel` its path relative to static/ (`../x`).
 */
function hostilePaths(outside: string, rel: string): string[] {
  const up = rel.replace(/^\.\.\//, "");
  return [
    "/static/file:/etc/passwd",
    "/static/file:///etc/passwd",
    "/static/file://localhost/etc/passwd",
    `/static/file:${outside}`,
    `/static/file://${outside}`,
    "/static//etc/passwd",
    `/static/${outside}`,
    "/static/%2fetc%2fpasswd",
    `/static/../${up}`,
    `/static/%2e%2e/${up}`,
    `/static/%2E%2E/${up}`,
    `/static/.%2e/${up}`,
    `/static/..%2f${up}`,
    `/static/%2e%2e%2f${up}`,
    `/static/%252e%252e/${up}`,
    `/static/%252e%252e%252f${up}`,
    `/static/..\\${up}`,
    `/static/..%5c${up}`,
    `/static/%2e%2e%5c${up}`,
    `/static/..%255c${up}`,
    `/static/build/../../${up}`,
    `/static/build/%2e%2e/%2e%2e/${up}`,
    `/static/../${up}%00`,
    "/static/style.css%00.js",
    "/static/style.css%2500",
    "/static/./style.css",
    "/static/%",
    "/static/%zz",
    "/static/",
    "/static/build",
    "/static/build/",
  ];
}

/** Runs the hostile table; also checks the stylesheet is still served. */
async function checkHostileTable(port: number, outside: string, rel: string): Promise<void> {
  for (const target of hostilePaths(outside, rel)) {
    assertNotFound(target, await rawRequest(port, target));
  }
  // A raw NUL in the request line never reaches a handler (the HTTP layer refuses it).
  const nul = await rawRequest(port, `/static/../${rel.replace(/^\.\.\//, "")}\0`);
  assertNoLeak("raw NUL", nul);
  assert.ok(nul.status === 400 || nul.status === 404, `raw NUL: ${nul.status}`);
  const css = await rawRequest(port, "/static/style.css");
  assert.deepEqual(css.status, 200);
  assert.match(css.headers["content-type"], /^text\/css/);
}

/**
 * A temp tree: `<root>/outside.txt` (a marker) beside `<root>/static/` holding a stylesheet, a
 * nested file, a symlink inside static/ (fine), symlinks out of it (file, directory, absolute), a
 * directory and a FIFO.
 */
interface StaticTree {
  root: string;
  staticDir: URL;
  fifo: boolean;
}

async function makeStaticTree(): Promise<StaticTree> {
  const root = await Deno.makeTempDir({ prefix: "dash_static_" });
  const dir = `${root}/static`;
  await Deno.mkdir(`${dir}/sub`, { recursive: true });
  await Deno.writeTextFile(`${root}/outside.txt`, "LEAK-MARKER outside static\n");
  await Deno.writeTextFile(`${dir}/style.css`, "body { color: black }\n");
  await Deno.writeTextFile(`${dir}/sub/ok.css`, "p { margin: 0 }\n");
  await Deno.symlink("style.css", `${dir}/alias.css`);
  await Deno.symlink("../outside.txt", `${dir}/link.css`);
  await Deno.symlink(`${root}/outside.txt`, `${dir}/abs.css`);
  await Deno.symlink("/etc/passwd", `${dir}/passwd.css`);
  await Deno.symlink("..", `${dir}/up`);
  const mk = await new Deno.Command("mkfifo", { args: [`${dir}/pipe.css`] }).output().catch(
    () => null,
  );
  return { root, staticDir: new URL(`file://${dir}/`), fifo: mk?.success === true };
}

/** The hostile table plus what needs the temp tree (symlinks, directories, a FIFO). */
async function checkTempTree(port: number, tree: StaticTree): Promise<void> {
  await checkHostileTable(port, `${tree.root}/outside.txt`, "../outside.txt");
  for (
    const target of [
      "/static/link.css",
      "/static/abs.css",
      "/static/passwd.css",
      "/static/up/outside.txt",
      "/static/up/static/link.css",
      "/static/sub",
      "/static/sub/",
      "/static/up",
    ]
  ) {
    assertNotFound(target, await rawRequest(port, target));
  }
  // A FIFO would block a reader forever: it is not a regular file, so it is never opened.
  if (tree.fifo) assertNotFound("/static/pipe.css", await rawRequest(port, "/static/pipe.css"));
  else console.warn("mkfifo is missing: the FIFO case is not checked");
  // What is inside static/ is served, through a symlink that stays inside too.
  for (const [target, text] of [["/static/sub/ok.css", "margin"], ["/static/alias.css", "color"]]) {
    const r = await rawRequest(port, target);
    assert.deepEqual(r.status, 200, `${target}: ${r.body}`);
    assert.ok(r.body.includes(text), target);
  }
}

/** The routes a rebinding page would read. */
const GET_ROUTES = [
  "/",
  "/api/state",
  "/api/events",
  "/metrics",
  "/static/style.css",
  "/api/world",
];

async function assertMisdirected(
  port: number,
  target: string,
  host: string | null,
  method = "GET",
) {
  const r = await rawRequest(port, target, {
    host,
    method,
    headers: method === "POST"
      ? [`Origin: http://127.0.0.1:${port}`, "Content-Type: application/json"]
      : [],
    body: method === "POST" ? "{}" : undefined,
  });
  const what = `${method} ${target} with Host ${JSON.stringify(host)}`;
  assert.deepEqual(r.status, 421, `${what}: ${r.status} ${r.body.slice(0, 200)}`);
  assert.match(r.headers["content-type"] ?? "", /^application\/json/, what);
  assert.match(JSON.parse(r.body).error, /Host/, what);
  assert.ok(!/"servers"|herd_|<html/i.test(r.body), `${what} leaked: ${r.body}`);
}

async function assertServed(port: number, target: string, host: string): Promise<void> {
  const r = await rawRequest(port, target, { host });
  assert.deepEqual(
    r.status,
    200,
    `${target} with Host ${host}: ${r.status} ${r.body.slice(0, 200)}`,
  );
  // No secret in any page, and no CORS grant: another origin's script cannot read the answer.
  assertNoLeak(target, r);
  assert.deepEqual(r.headers["access-control-allow-origin"], undefined, target);
}

/** Loopback names pass; foreign, wrong-port, port-less and missing Hosts get 421 on every route. */
async function checkHostRules(port: number, allowed: string[] = []): Promise<void> {
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, ...allowed]) {
    for (const target of GET_ROUTES) await assertServed(port, target, host);
  }
  await assertServed(port, "/api/state", `LocalHost:${port}`);
  for (
    const host of [
      `evil.example:${port}`,
      "evil.example",
      `127.0.0.1:${port + 1}`,
      "127.0.0.1",
      `localhost.evil.example:${port}`,
      `127.0.0.1.nip.io:${port}`,
      null,
    ]
  ) {
    for (const target of [...GET_ROUTES, "/static/../deno.json", "/nope"]) {
      await assertMisdirected(port, target, host);
    }
    await assertMisdirected(port, "/api/command", host, "POST");
  }
}

/** A temp static tree, the seed herd, and a `start`-style and a remote dashboard on it. */
async function withDashboards(
  fn: (d: { start: ServedDashboard; remote: ServedDashboard }, tree: StaticTree) => Promise<void>,
): Promise<void> {
  const tree = await makeStaticTree();
  const t: TestHerd = await startSeedHerd();
  const remote = new RemoteHerd(t.config, { secret: SECRET, minBackoffMs: 50, maxBackoffMs: 200 });
  remote.start();
  const opts = { host: "127.0.0.1", port: 0, quiet: true, staticDir: tree.staticDir };
  const start = await serveDashboard(t.herd, opts);
  const remoteDash = await serveDashboard(remote, opts);
  try {
    await fn({ start, remote: remoteDash }, tree);
  } finally {
    await start.close();
    await remoteDash.close();
    await remote.stop();
    await t.close();
    await Deno.remove(tree.root, { recursive: true });
  }
}

/** The demo herd (stop/start work) behind a dashboard with `opts`. */
async function withDemoDashboard(
  opts: Partial<DashboardOptions>,
  fn: (port: number, herd: DemoHerd) => Promise<void>,
): Promise<void> {
  const herd = new DemoHerd();
  await herd.start();
  const d = await serveDashboard(herd, { host: "127.0.0.1", port: 0, quiet: true, ...opts });
  try {
    await fn(port(d), herd);
  } finally {
    await d.close();
    await herd.stop();
  }
}

const port = (d: ServedDashboard) => Number(new URL(d.url).port);
const sse = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "static: hostile paths never read outside static/ (start and remote dashboards)",
  ...sse,
  async fn() {
    await withDashboards(async ({ start, remote }, tree) => {
      await checkTempTree(port(start), tree);
      await checkTempTree(port(remote), tree);
    });
  },
});

Deno.test({
  name: "Host: only the listen address's names reach any route (start and remote dashboards)",
  ...sse,
  async fn() {
    await withDashboards(async ({ start, remote }) => {
      await checkHostRules(port(start));
      await checkHostRules(port(remote));
    });
  },
});

Deno.test({
  name: "Host: --dashboard-allowed-hosts adds names (any port, or one port) and their origin",
  ...sse,
  async fn() {
    const allowedHosts = ["Dash.Example", "other.example:1234", "[fd00::1]:8443"];
    await withDemoDashboard({ allowedHosts }, async (p, herd) => {
      for (const host of [`dash.example:${p}`, "dash.example", "other.example:1234"]) {
        await assertServed(p, "/api/state", host);
      }
      await assertServed(p, "/api/state", "[fd00::1]:8443");
      await assertMisdirected(p, "/api/state", `other.example:${p}`);
      await assertMisdirected(p, "/api/state", `[fd00::1]:${p}`);
      // The page served under an allowed name can control; a foreign Origin still cannot.
      const stop = async (origin: string) =>
        await rawRequest(p, "/api/servers/Hill/stop", {
          method: "POST",
          host: `dash.example:${p}`,
          headers: [`Origin: ${origin}`],
          body: "",
        });
      assert.deepEqual((await stop("http://evil.example")).status, 403);
      assert.deepEqual(herd.snapshot().servers[0].running, true);
      const ok = await stop(`http://dash.example:${p}`);
      assert.deepEqual(ok.status, 200, ok.body);
      assert.deepEqual(herd.snapshot().servers[0].running, false);
    });
  },
});

Deno.test({
  name: "Host: a wildcard listen answers loopback names and allowed names only",
  ...sse,
  async fn() {
    const opts = { host: "0.0.0.0", token: "tok-wild", allowedHosts: ["dash.example"] };
    await withDemoDashboard(opts, async (p) => {
      await checkHostRules(p, [`dash.example:${p}`]);
    });
  },
});

// ---------------------------------------------------------------------------------------------
// The real CLI: `start` and `dashboard` processes, the repository's static/.

function spawn(args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...taskFlags(args[0]), MAIN, ...args],
    env: { GOOGLE_PLACES_API_KEY: "" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

Deno.test({
  name: "static and Host: the real start and dashboard processes",
  ...sse,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dash_cli_" });
    const [a, b, web, webRemote] = freePorts(4);
    const config = `${dir}/herd.json`;
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        servers: { Alpha: { port: a, neighbors: ["Beta"] }, Beta: { port: b } },
        secret: "cfg-secret-must-not-leak",
      }),
    );
    const allowed = ["--dashboard-allowed-hosts", "dash.example"];
    const children = [
      spawn([
        "start",
        "--config",
        config,
        "--memory",
        "--log-dir",
        dir,
        "--dashboard-port",
        String(web),
        ...allowed,
      ]),
      spawn(["dashboard", "--config", config, "--dashboard-port", String(webRemote), ...allowed]),
    ];
    try {
      for (const p of [web, webRemote]) {
        await waitFor(
          async () => {
            try {
              return (await rawRequest(p, "/api/state", { ms: 2000 })).status === 200;
            } catch {
              return false;
            }
          },
          45_000,
          `dashboard on ${p}`,
        );
        await checkHostileTable(p, `${REPO}/deno.json`, "../../deno.json");
        assertNotFound(`file:${config}`, await rawRequest(p, `/static/file:${config}`));
        assertNotFound("file: KV", await rawRequest(p, `/static/file:${dir}/Alpha.log`));
        await checkHostRules(p, [`dash.example:${p}`]);
      }
    } finally {
      for (const c of children) {
        try {
          c.kill("SIGKILL");
        } catch {
          // already gone
        }
        await c.output();
      }
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("--dashboard-allowed-hosts: a bad entry is one line and exit 2", async () => {
  for (const value of ["evil example", "a,,b:", "host:99999", "http://x", "a/b", "[::1"]) {
    let err: unknown;
    try {
      parseHerdFlags(["--dashboard-allowed-hosts", value]);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof UsageError, value);
    assert.match(err.message, /^--dashboard-allowed-hosts: bad entry "/, value);
  }
  assert.deepEqual(
    parseHerdFlags(["--dashboard-allowed-hosts", " a.example , b.example:81,"])
      .dashboardAllowedHosts,
    ["a.example", "b.example:81"],
  );
  // The real CLI: one line, exit 2 (for `dashboard` the flags are the same parser).
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, "start", "--dashboard-allowed-hosts", "evil example"],
    env: { GOOGLE_PLACES_API_KEY: "" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr).trim();
  assert.deepEqual(out.code, 2, err);
  assert.deepEqual(
    err,
    'error: --dashboard-allowed-hosts: bad entry "evil example" (want host or host:port)',
  );
});

// Found by an adversarial review (adv9): the token went into the printed URL raw.
Deno.test("dashboard: the URL printed with a token holding '#', '&', '+' and '%' opens the dashboard", async () => {
  const [hill, web] = freePorts(2);
  const config = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(
    config,
    JSON.stringify({ servers: { Hill: { port: hill, neighbors: [] } } }),
  );
  const token = "a#bc+d&e%zz";
  const child = spawnDashboard(config, web, {
    HERD_OPEN_FILES: "1024",
    HERD_SECRET: "dashboard-token-url-secret-0123456789",
    HERD_DASHBOARD_TOKEN: token,
  });
  let out = "";
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const reading = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      out += value;
    }
  })();
  try {
    await waitFor(() => /Dashboard: \S/.test(out), 60_000, "the dashboard's URL line");
    await new Promise((r) => setTimeout(r, 200));
    const printed = out.match(/Dashboard: (.*)\n/)![1];
    const url = new URL(printed);
    assert.equal(
      url.searchParams.get("token"),
      token,
      `the printed URL ${JSON.stringify(printed)} carries token ${
        JSON.stringify(url.searchParams.get("token"))
      }`,
    );
    const res = await fetch(url);
    await res.body?.cancel();
    assert.equal(res.status, 200, `GET ${printed} answered ${res.status}`);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    await reader.cancel().catch(() => {});
    await reading.catch(() => {});
    await child.stderr.cancel().catch(() => {});
    await Deno.remove(config);
  }
});
