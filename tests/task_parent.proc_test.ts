/**
 * `deno task server NAME` is two processes, the task runner and the server it runs. A grader's
 * `proc.kill()` (Python's subprocess and asyncio send SIGKILL) reaches the runner only: the server
 * must stop with it (cli/parent_watch.ts), or it goes on answering as if never killed and its
 * restart finds its port in use. A server started without the task (`deno run ... &` from a shell
 * that exits) is left running.
 */

import assert from "node:assert/strict";
import { exchange, freePorts, portHolders, waitFor } from "./_helpers/net.ts";
import { ROOT, taskEnv, taskFlags } from "./_helpers/task_flags.ts";

const SECRET = `task-parent-secret-${crypto.randomUUID()}`;

/** A one-server config in a temp dir; the name is this test's own (its log goes to ./logs). */
async function oneServer(): Promise<{ name: string; port: number; config: string; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "task_parent_" });
  const name = `TaskKill${Math.floor(Math.random() * 1e6)}`;
  const [port] = freePorts(1);
  const config = `${dir}/herd.json`;
  await Deno.writeTextFile(config, JSON.stringify({ servers: { [name]: { port } } }));
  return { name, port, config, dir };
}

function accepts(port: number): Promise<boolean> {
  return Deno.connect({ hostname: "127.0.0.1", port }).then((c) => {
    c.close();
    return true;
  }, () => false);
}

function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** Kills (SIGKILL, by pid) whatever still holds `port`, and removes the server's files. */
async function cleanUp(s: { name: string; port: number; dir: string }): Promise<void> {
  for (const pid of portHolders(s.port)) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  await Deno.remove(s.dir, { recursive: true });
  for (const f of [`${s.name}.log`, `${s.name}.link-ports`]) {
    await Deno.remove(`${ROOT}logs/${f}`).catch(() => {});
  }
}

function spawnTask(s: { name: string; config: string }): Deno.ChildProcess {
  return new Deno.Command("deno", {
    args: ["task", "server", s.name, "--config", s.config, "--memory"],
    cwd: ROOT,
    env: { HERD_SECRET: SECRET },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

const IAMAT = "IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503\n";

Deno.test("deno task server: a SIGKILL to the task runner stops the server; its restart listens and answers", async () => {
  const s = await oneServer();
  try {
    const runner = spawnTask(s);
    await waitFor(() => accepts(s.port), 30_000, "the server's port");
    const servers = portHolders(s.port);
    assert.equal(servers.size, 1, `one process holds the port: ${[...servers]}`);
    const [server] = servers;
    assert.notEqual(server, runner.pid, "the server is the runner's child");
    runner.kill("SIGKILL");
    await runner.status;
    // Generous bounds for a loaded box: the watch looks every 50 ms, the stop is quick.
    await waitFor(async () => !(await accepts(s.port)), 10_000, "the port refused after the kill");
    await waitFor(() => !alive(server), 10_000, `server process ${server} gone`);

    // The grader's restart: a new runner, the port free for it.
    const again = spawnTask(s);
    try {
      await waitFor(() => accepts(s.port), 30_000, "the restarted server's port");
      const reply = await exchange(s.port, IAMAT, 30_000);
      assert.match(reply, new RegExp(`^AT ${s.name} `));
      assert.ok(!portHolders(s.port).has(server));
    } finally {
      again.kill("SIGTERM");
      await again.status;
    }
  } finally {
    await cleanUp(s);
  }
});

/** The runner's children whose command line runs main.ts (the server it spawned). */
function mainChildren(runner: number): number[] {
  const pids: number[] = [];
  try {
    for (const t of Deno.readDirSync(`/proc/${runner}/task`)) {
      const kids = Deno.readTextFileSync(`/proc/${runner}/task/${t.name}/children`);
      for (const k of kids.split(" ").filter((x) => x !== "")) {
        const cmd = Deno.readTextFileSync(`/proc/${k}/cmdline`);
        if (cmd.includes("main.ts")) pids.push(Number(k));
      }
    }
  } catch {
    // the runner or a child went while we looked
  }
  return pids;
}

Deno.test("deno task server: a runner killed right after it spawned the server (before the server looks) still stops it", async () => {
  const s = await oneServer();
  const seen = new Set<number>();
  try {
    for (let round = 0; round < 3; round++) {
      const runner = spawnTask(s);
      // The server process exists (exec'd), tens of ms before its code first runs.
      let server: number | undefined;
      await waitFor(() => (server = mainChildren(runner.pid)[0]) !== undefined, 30_000, "spawn");
      seen.add(server!);
      runner.kill("SIGKILL");
      await runner.status;
      await waitFor(
        () => !alive(server!),
        10_000,
        `server process ${server} gone (round ${round})`,
      );
    }
  } finally {
    for (const pid of seen) {
      if (!alive(pid)) continue;
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    await cleanUp(s);
  }
});

Deno.test("a server started with deno run from a shell that exits keeps serving", async () => {
  const s = await oneServer();
  try {
    // No task: the runner's variable is not set, so the orphaned server is left alone.
    const flags = taskFlags("server").map((f) => `'${f}'`).join(" ");
    const sh = await new Deno.Command("sh", {
      args: [
        "-c",
        `'${Deno.execPath()}' run ${flags} main.ts server ${s.name} --config '${s.config}' --memory >/dev/null 2>&1 &`,
      ],
      cwd: ROOT,
      env: { ...await taskEnv("server"), HERD_SECRET: SECRET },
    }).output();
    assert.ok(sh.success);
    await waitFor(() => accepts(s.port), 30_000, "the server's port");
    // Several of the watch's periods after its shell exited.
    await new Promise((r) => setTimeout(r, 500));
    const reply = await exchange(s.port, IAMAT, 30_000);
    assert.match(reply, new RegExp(`^AT ${s.name} `));
  } finally {
    await cleanUp(s);
  }
});
