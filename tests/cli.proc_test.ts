/**
 * The command line as a user meets it: real processes, real ports, real signals.
 */

import assert from "node:assert/strict";
import { exchange, freePorts, waitFor } from "./_helpers/net.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

async function run(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function writeConfig(json: unknown): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(path, typeof json === "string" ? json : JSON.stringify(json));
  return path;
}

Deno.test("bad flags and configs print one clear line and exit 2", async () => {
  const cases: [string[], RegExp][] = [
    [["start", "--bogus"], /bogus/],
    [["start", "--partial-line-ms", "soon"], /--partial-line-ms must be an integer/],
    [["start", "--places", "bing"], /--places must be offline, new or legacy/],
    [["start", "--config", "/nonexistent/herd.json"], /cannot read config .*no such file/],
    [["start", "--places", "new"], /needs a Google API key/],
    [["server"], /exactly one server NAME/],
    [["server", "Nobody"], /no server named Nobody/],
    [["frobnicate"], /unknown command/],
  ];
  for (const [args, re] of cases) {
    const r = await run(args, { GOOGLE_PLACES_API_KEY: "" });
    assert.deepEqual(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    const lines = r.stderr.trim().split("\n");
    assert.deepEqual(lines.length, 1, `one line for ${args.join(" ")}: ${r.stderr}`);
    assert.match(lines[0], re);
  }
  const configs: [unknown, RegExp][] = [
    ["{ not json", /not valid JSON/],
    [{ servers: { A: { port: 70000 } } }, /bad port 70000/],
    [{ servers: { A: { port: 9000 }, B: { port: 9000 } } }, /port 9000 is already used by A/],
    [{ servers: { A: { port: 9000, neighbors: ["Z"] } } }, /unknown neighbour Z/],
    [{ servers: {} }, /no servers/],
  ];
  for (const [json, re] of configs) {
    const path = await writeConfig(json);
    const r = await run(["start", "--config", path, "--no-dashboard", "--memory"]);
    await Deno.remove(path);
    assert.deepEqual(r.code, 2, r.stderr);
    assert.deepEqual(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, re);
  }
});

Deno.test("start: one line per server, serves, and stops cleanly on SIGINT and SIGTERM", async () => {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    const ports = freePorts(2);
    const config = await writeConfig({
      servers: { Alpha: { port: ports[0], neighbors: ["Beta"] }, Beta: { port: ports[1] } },
    });
    const dir = await Deno.makeTempDir();
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        MAIN,
        "start",
        "--config",
        config,
        "--log-dir",
        `${dir}/logs`,
        "--memory",
        "--no-dashboard",
      ],
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn();
    try {
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let out = "";
      const deadline = performance.now() + 15000;
      while (!out.includes("Beta listening")) {
        assert.ok(performance.now() < deadline, `no start-up lines: ${out}`);
        const { value, done } = await reader.read();
        if (done) break;
        out += value;
      }
      assert.match(out, new RegExp(`Alpha listening on 127\\.0\\.0\\.1:${ports[0]}`));
      assert.match(out, new RegExp(`Beta listening on 127\\.0\\.0\\.1:${ports[1]}`));
      assert.match(await exchange(ports[0], "IAMAT cli +1+1 1\n"), /AT Alpha/);
      await waitFor(
        async () => (await exchange(ports[1], "WHATSAT cli 1 0\n")).startsWith("AT Alpha"),
        3000,
        "flood",
      );
      child.kill(signal);
      const status = await child.status;
      reader.releaseLock();
      await child.stdout.cancel().catch(() => {});
      assert.deepEqual(status.code, 0, `${signal} exit code`);
      const log = await Deno.readTextFile(`${dir}/logs/Alpha.log`);
      // Connection numbers count Beta's link dials too (both ends dial).
      const conn = /IN #(\d+) IAMAT cli \+1\+1 1\n/.exec(log)?.[1];
      assert.ok(conn !== undefined, "the IAMAT is logged");
      assert.match(log, new RegExp(`OUT #${conn} AT Alpha \\S+ cli \\+1\\+1 1`));
      assert.match(log, /ACCEPT client AT Alpha \S+ cli \+1\+1 1\n/);
      assert.match(log, /SEND to Beta 1 record\(s\): cli\n/);
      const beta = await Deno.readTextFile(`${dir}/logs/Beta.log`);
      assert.match(beta, /RECV from Alpha 1 record\(s\)\n/);
      assert.match(beta, /ACCEPT from Alpha AT Alpha \S+ cli \+1\+1 1\n/);
    } finally {
      try {
        child.kill("SIGKILL");
      } catch {
        // already exited
      }
      await child.stderr.cancel().catch(() => {});
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(config);
    }
  }
});

Deno.test("a port already in use is reported by server name and port", async () => {
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (busy.addr as Deno.NetAddr).port;
  const config = await writeConfig({ servers: { Gamma: { port } } });
  try {
    const r = await run([
      "start",
      "--config",
      config,
      "--memory",
      "--no-dashboard",
      "--log-dir",
      await Deno.makeTempDir(),
    ]);
    assert.deepEqual(r.code, 1);
    assert.match(r.stderr, new RegExp(`Gamma: port ${port} on 127\\.0\\.0\\.1 is already in use`));
  } finally {
    busy.close();
    await Deno.remove(config);
  }
});

Deno.test("client: one command, stdin lines, and host:port targets", async () => {
  const ports = freePorts(1);
  const config = await writeConfig({ servers: { Delta: { port: ports[0] } } });
  const dir = await Deno.makeTempDir();
  const server = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      MAIN,
      "server",
      "Delta",
      "--config",
      config,
      "--memory",
      "--log-dir",
      dir,
      "--no-dashboard",
    ],
    env: { HERD_SECRET: "cli-test-secret-123" },
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await waitFor(
      async () => {
        try {
          (await Deno.connect({ hostname: "127.0.0.1", port: ports[0] })).close();
          return true;
        } catch {
          return false;
        }
      },
      15000,
      "server up",
    );
    const one = await run([
      "client",
      "--config",
      config,
      "Delta",
      "IAMAT kiwi +34.06-118.44 1700000000.5",
    ]);
    assert.deepEqual(one.code, 0);
    assert.match(one.stdout, /^AT Delta [+-]\d+\.\d{9} kiwi \+34\.06-118\.44 1700000000\.5\n$/);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", MAIN, "client", `127.0.0.1:${ports[0]}`],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode("WHATSAT kiwi 10 1\nnope\n"));
    await w.close();
    const out = await child.output();
    const text = new TextDecoder().decode(out.stdout);
    assert.match(text, /^AT Delta \S+ kiwi \S+ 1700000000\.5\n\{\n[\s\S]*\}\n\n\? nope\n$/);
    const bad = await run(["client", "Nowhere", "IAMAT x +1+1 1"]);
    assert.deepEqual(bad.code, 2);
    assert.match(bad.stderr, /unknown server Nowhere/);
  } finally {
    server.kill("SIGKILL");
    await server.status;
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(config);
  }
});

Deno.test("server processes need no dashboard flag; `dashboard --config` watches them", async () => {
  const [a, b, web] = freePorts(3);
  const config = await writeConfig({
    servers: { Alpha: { port: a, neighbors: ["Beta"] }, Beta: { port: b } },
    secret: "cli-remote-dashboard-secret",
  });
  const dir = await Deno.makeTempDir();
  const spawn = (args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", MAIN, ...args],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
  // Both servers with default flags: neither may try to take a dashboard port.
  const children = [
    spawn(["server", "Alpha", "--config", config, "--memory", "--log-dir", dir]),
    spawn(["server", "Beta", "--config", config, "--memory", "--log-dir", dir]),
    spawn(["dashboard", "--config", config, "--dashboard-port", String(web)]),
  ];
  try {
    await waitFor(
      async () => {
        try {
          return (await exchange(b, "IAMAT remote +1+1 1\n")).startsWith("AT Beta");
        } catch {
          return false;
        }
      },
      20000,
      "both servers up",
    );
    await waitFor(
      async () => {
        try {
          const state = await (await fetch(`http://127.0.0.1:${web}/api/state`)).json();
          return state.servers.every((s: { running: boolean; records: number }) =>
            s.running && s.records === 1
          );
        } catch {
          return false;
        }
      },
      20000,
      "the dashboard sees both servers and the record",
    );
  } finally {
    for (const c of children) {
      try {
        c.kill("SIGKILL");
      } catch {
        // already gone
      }
      await c.status;
    }
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(config);
  }
});
