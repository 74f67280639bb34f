/**
 * IPv6 hosts in a config, run as graders do (`main.ts server NAME` with the `server` task's own
 * permissions): `::1` and `[::1]` start, print their address in brackets, link to each other and
 * to a `localhost` neighbour, and log an IPv6 client's address unambiguously. Before, a server
 * whose host was `::1` or `[::1]` died at start with an uncaught URIError (its net permission was
 * checked for the text `::1:PORT`), and `start` printed `Hill listening on ::1:12000`.
 */

import assert from "node:assert/strict";
import { exchange, TcpClient, waitFor } from "./_helpers/net.ts";
import { iamat, ProcessHerd, ServerProcess, whatsat } from "./_helpers/procs.ts";
import { leasePorts } from "./_helpers/ports.ts";
import { type ReleasedLog, releaseHeldLog } from "./_helpers/held_log.ts";

Deno.test("server: hosts ::1, [::1] and localhost start, print [::1]:PORT, and flood over IPv6", async () => {
  // The helper widens --allow-net by the herd's hosts: "[::1]", which the task grants already.
  await using herd = await ProcessHerd.create({
    topology: { Hill: ["Jaquez"], Jaquez: ["Hill", "Smith"], Smith: ["Jaquez"] },
    host: () => "[::1]",
  });
  const hosts: Record<string, string> = { Hill: "::1", Jaquez: "[::1]", Smith: "localhost" };
  const servers: Record<string, { port: number; host: string; neighbors: string[] }> = {};
  for (const name of herd.names) {
    servers[name] = { port: herd.port(name), host: hosts[name], neighbors: herd.topology[name] };
  }
  const config = `${herd.dir}/v6.json`;
  await Deno.writeTextFile(config, JSON.stringify({ servers }));
  for (const name of herd.names) await herd.start(name, ["--memory", "--config", config]);

  const hill = herd.procs.get("Hill")!;
  assert.match(hill.stdout, new RegExp(`^Hill listening on \\[::1\\]:${herd.port("Hill")} `, "m"));
  assert.match(
    herd.procs.get("Jaquez")!.stdout,
    new RegExp(`^Jaquez listening on \\[::1\\]:${herd.port("Jaquez")} `, "m"),
  );
  assert.match(
    herd.procs.get("Smith")!.stdout,
    new RegExp(`^Smith listening on localhost:${herd.port("Smith")} `, "m"),
  );

  // Reported over IPv6 at Hill, known at Smith two hops on (Hill-Jaquez is an IPv6 link).
  const at = await iamat(
    herd.port("Hill"),
    "v6client",
    "+34.068930-118.445127",
    "1700000000.5",
    "::1",
  );
  await waitFor(
    async () => (await whatsat(herd.port("Smith"), "v6client")) === at,
    15_000,
    "Smith to know v6client",
  );

  // The log writes the IPv6 client's address in brackets, as the listen line's.
  const log = await Deno.readTextFile(`${herd.logDir}/Hill.log`);
  assert.match(log, new RegExp(`UP listening on \\[::1\\]:${herd.port("Hill")}\\b`));
  assert.match(log, /CONNECT #\d+ from \[::1\]:\d+/);
  for (const p of herd.procs.values()) assert.doesNotMatch(p.stderr, /Uncaught|URIError/);
});

Deno.test("server: on host ::1 the client port listens early, while the start is held", async () => {
  await using herd = await ProcessHerd.create({ topology: { Solo: [] }, host: () => "[::1]" });
  const config = `${herd.dir}/v6.json`;
  const port = herd.port("Solo");
  await Deno.writeTextFile(config, JSON.stringify({ servers: { Solo: { port, host: "::1" } } }));
  // The start is held at its log file: a FIFO that no one reads yet (as startup.proc_test.ts).
  await Deno.mkdir(herd.logDir, { recursive: true });
  const log = `${herd.logDir}/Solo.log`;
  const made = await new Deno.Command("mkfifo", { args: [log] }).output();
  assert.equal(made.code, 0, "mkfifo");
  const proc = await herd.spawn("Solo", ["--memory", "--config", config]);
  let released: ReleasedLog | undefined;
  try {
    let client: TcpClient | undefined;
    const deadline = performance.now() + 20_000;
    while (client === undefined && performance.now() < deadline && !proc.exited) {
      client = await TcpClient.connect(port, "::1").catch(() => undefined);
      if (client === undefined) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(client, `[::1]:${port} never accepted while the start was held: ${proc.stderr}`);
    await using _c = client;
    await client.send("IAMAT early.v6 +34.068930-118.445127 1700000001.5\n");
    assert.ok(!proc.stdout.includes("listening on"), proc.stdout);
    released = await releaseHeldLog(log);
    const [at] = await client.replies(1, 30_000);
    assert.match(at, /^AT Solo [+-]\d+\.\d{9} early\.v6 \+34\.068930-118\.445127 1700000001\.5\n$/);
    await proc.waitListening();
    assert.match(proc.stdout, new RegExp(`^Solo listening on \\[::1\\]:${port} `, "m"));
  } finally {
    await herd.kill("Solo");
    await released?.close();
  }
});

Deno.test("start: hosts ::1 and [::1] under an --allow-net of loopback only start and answer", async () => {
  // A user of non-default hosts runs `deno run --allow-net=HOSTS ... main.ts start` (README).
  // `start`'s early listen asked the net permission for `::1:PORT`, which throws under a
  // limited --allow-net: the process died with an uncaught URIError before any server started.
  const [a, b] = leasePorts(2);
  const dir = await Deno.makeTempDir({ prefix: "herd-v6-start-" });
  const config = `${dir}/v6.json`;
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      servers: {
        Ant: { port: a, host: "::1", neighbors: ["Bee"] },
        Bee: { port: b, host: "[::1]", neighbors: ["Ant"] },
      },
    }),
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1,[::1]",
      "--allow-read",
      `--allow-write=${dir}`,
      "--allow-env",
      "main.ts",
      "start",
      "--config",
      config,
      "--memory",
      "--no-dashboard",
      "--log-dir",
      dir,
    ],
    cwd: new URL("..", import.meta.url).pathname,
    env: { HERD_SECRET: "ipv6-start-test-secret-0123" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const proc = new ServerProcess("Bee", child);
  try {
    await proc.waitListening();
    assert.match(proc.stdout, new RegExp(`^Ant listening on \\[::1\\]:${a} `, "m"));
    const at = await iamat(a, "v6start", "+34.068930-118.445127", "1700000000.5", "::1");
    await waitFor(
      async () => (await exchange(b, "WHATSAT v6start 10 1\n", 3000, "::1")).startsWith(at),
      15_000,
      "Bee to know v6start",
    );
    assert.doesNotMatch(proc.stderr, /Uncaught|URIError/);
  } finally {
    await proc.kill();
    await Deno.remove(dir, { recursive: true });
  }
});
