/**
 * CS 131 grading scripts and student clients of several terms (2016-2024), as shapes over real
 * server processes: other terms' server names and topologies from a config file, each malformed
 * line graders send (with CRLF, trailing spaces, leading tabs), the radius and bound edges with
 * the WHATSAT JSON compared as Google's (field order, `next_page_token` kept, results cut), a
 * command with neither LF nor EOF, a telnet session, two IAMATs of one client out of order at the
 * two farthest servers, a WHATSAT at the farthest server with no sleep, and each way graders stop
 * a server (Ctrl-C to its group, SIGTERM, SIGKILL) followed by a WHATSAT 0.1 s after the restart.
 * (tmp/grader.py of branch soak17 ran these shapes thousands of times; the `lsof` kill, the
 * startup hold and the far-future time have tests of their own: link_port, startup, timing.)
 */

import assert from "node:assert/strict";
import { ProcessHerd } from "./_helpers/procs.ts";
import { exchange, TcpClient } from "./_helpers/net.ts";
import { startFakeGoogle } from "./_helpers/fake_google.ts";
import { leasePorts } from "./_helpers/ports.ts";
import { ROOT, taskEnv, taskFlags } from "./_helpers/task_flags.ts";

const LOC = "+34.068930-118.445127";
const KEY = "procs-test-key"; // ProcessHerd's GOOGLE_PLACES_API_KEY

/** The 2016 term's herd: a ring of five. */
const TERM_2016: Record<string, string[]> = {
  Alford: ["Hamilton", "Welsh"],
  Ball: ["Holiday", "Welsh"],
  Hamilton: ["Alford", "Holiday"],
  Holiday: ["Ball", "Hamilton"],
  Welsh: ["Alford", "Ball"],
};

/** The 2019 term's herd: Welsh and Hands are three hops apart. */
const TERM_2019: Record<string, string[]> = {
  Goloman: ["Hands", "Holiday", "Wilkes"],
  Hands: ["Goloman", "Wilkes"],
  Holiday: ["Goloman", "Welsh", "Wilkes"],
  Welsh: ["Holiday"],
  Wilkes: ["Goloman", "Hands", "Holiday"],
};

/** Now plus `s` seconds, with nanoseconds. */
function timeIn(s = 0): string {
  const ns = Temporal.Now.instant().epochNanoseconds + BigInt(Math.round(s * 1e9));
  return `${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, "0")}`;
}

/** One command on its own connection, half-closed, as `nc -q` sends it; the whole answer. */
function ask(port: number, data: string): Promise<string> {
  return exchange(port, data, 20_000);
}

/** The AT line a server must send, as the graders' regex has it. */
function atLine(server: string, client: string, loc: string, time: string, sign = "\\+"): RegExp {
  const esc = (s: string) => s.replace(/[.+]/g, "\\$&");
  return new RegExp(`^AT ${server} ${sign}\\d+\\.\\d{9} ${esc(client)} ${esc(loc)} ${esc(time)}\n`);
}

/**
 * A WHATSAT reply as graders check it: the stored AT line, then Google's legacy JSON (keys in
 * Google's order, `next_page_token` kept, results cut to the bound), ending `}\n\n`.
 */
function assertWhatsat(reply: string, origin: string, client: string, time: string, bound: number) {
  assert.match(reply, atLine(origin, client, LOC, time));
  assert.ok(reply.endsWith("}\n\n") && !reply.slice(0, -2).includes("\n\n"), reply.slice(-200));
  const body = JSON.parse(reply.slice(reply.indexOf("\n") + 1));
  const keys = Object.keys(body);
  if (bound === 0) {
    assert.deepEqual(body.results, [], reply);
    return;
  }
  assert.deepEqual(keys, ["html_attributions", "next_page_token", "results", "status"], reply);
  assert.equal(body.status, "OK");
  assert.equal(body.results.length, bound);
  for (const r of body.results) assert.deepEqual(Object.keys(r), Object.keys(r).sort());
}

/** Every malformed line a grader sends, with `t` a valid time. */
function malformed(t: string): string[] {
  return [
    `IAMAT kiwi ${LOC}`,
    `IAMAT kiwi ${LOC} ${t} extra`,
    `IAMAT ${LOC} ${t}`,
    `IAMAT kiwi 34.068930-118.445127 ${t}`,
    `IAMAT kiwi +34.068930118.445127 ${t}`,
    `IAMAT kiwi +34.-118 ${t}`,
    `IAMAT kiwi +34.0-118. ${t}`,
    `IAMAT kiwi +91-118 ${t}`,
    `IAMAT kiwi +34-181 ${t}`,
    `IAMAT kiwi ++34-118 ${t}`,
    `IAMAT kiwi +34,0-118 ${t}`,
    `IAMAT kiwi +34.0 -118 ${t}`,
    `IAMAT kiwi ${LOC} ${t}.`,
    `IAMAT kiwi ${LOC} -${t}`,
    `IAMAT kiwi ${LOC} 1e9`,
    `IAMAT kiwi ${LOC} ${timeIn(86_400 + 120)}`,
    `iamat kiwi ${LOC} ${t}`,
    "WHATSAT kiwi 10",
    "WHATSAT kiwi 10 5 5",
    "WHATSAT kiwi 0 5",
    "WHATSAT kiwi 51 5",
    "WHATSAT kiwi 50.0001 5",
    "WHATSAT kiwi 10 21",
    "WHATSAT kiwi 10 5.5",
    "WHATSAT kiwi 1- 5",
    "WHATSAT never-reported 10 5",
    "whatsat kiwi 10 5",
    `AT Alford +0.263873386 kiwi ${LOC} ${t}`,
  ];
}

Deno.test("graders' shapes: another term's names from a config; each malformed line, CRLF, trailing spaces; the radius and bound edges as Google's JSON", async () => {
  await using fake = startFakeGoogle(KEY);
  await using herd = await ProcessHerd.create({
    topology: TERM_2016,
    args: () => ["--memory", "--places", "legacy", "--places-url", fake.origin],
  });
  await herd.startAll();
  const names = herd.names;
  const t0 = timeIn();
  assert.match(
    await ask(herd.port("Alford"), `IAMAT kiwi ${LOC} ${t0}\n`),
    atLine("Alford", "kiwi", LOC, t0),
  );
  const endings = ["\n", "\r\n", "  \n", " \t\r\n"];
  const lines = malformed(timeIn());
  for (const [i, line] of lines.entries()) {
    const port = herd.port(names[i % names.length]);
    const lead = i % 3 === 0 ? "\t " : "";
    assert.equal(await ask(port, lead + line + endings[i % endings.length]), `? ${line}\n`);
  }
  // Valid edge forms, with CRLF or trailing blanks, fields copied byte for byte.
  for (const [i, loc] of ["+34.0-118", "+34-118", "-90+180", "+27.5916+086.5640"].entries()) {
    const t = timeIn();
    const name = names[i];
    const reply = await ask(herd.port(name), `IAMAT edge${i}  ${loc}\t${t}${endings[i]}`);
    assert.match(reply, atLine(name, `edge${i}`, loc, t));
  }
  // An hour ahead is a report (negative diff); the blank lines before it get no reply.
  const ahead = timeIn(3600);
  assert.match(
    await ask(herd.port("Ball"), `\r\n  \n\tIAMAT fast ${LOC} ${ahead}\r\n`),
    new RegExp(`^AT Ball -35\\d\\d\\.\\d{9} fast \\${LOC} ${ahead}\n$`),
  );
  // Radius and bound edges, at every server (kiwi was reported at Alford).
  for (const [i, [radius, bound]] of [["50", 20], ["50.0", 0], ["0.001", 1], ["10", 5]].entries()) {
    const name = names[(i + 1) % names.length];
    const reply = await ask(herd.port(name), `WHATSAT kiwi ${radius} ${bound}\r\n`);
    assertWhatsat(reply, "Alford", "kiwi", t0, bound as number);
  }
  herd.assertHealthy();
});

Deno.test("graders' shapes: a command with neither LF nor EOF, and a telnet session (CRLF, one command at a time)", async () => {
  await using fake = startFakeGoogle(KEY);
  await using herd = await ProcessHerd.create({
    topology: TERM_2016,
    args: () => ["--memory", "--places", "legacy", "--places-url", fake.origin],
  });
  await herd.startAll(["Hamilton"]);
  const port = herd.port("Hamilton");
  // Sent without LF and left open: answered after the partial-line wait, its diff without it.
  const c = await TcpClient.connect(port);
  try {
    const t = timeIn();
    await c.send(`IAMAT nolf ${LOC} ${t}`);
    const [line] = await c.replies(1, 20_000);
    assert.match(line, atLine("Hamilton", "nolf", LOC, t));
    assert.ok(Number(line.split(" ")[2]) < 0.45, line);
  } finally {
    await c.close();
  }
  const s = await TcpClient.connect(port);
  try {
    // Each command sent only once the reply before it came, as a person at telnet types.
    for (let k = 0; k < 3; k++) {
      const t = timeIn();
      await s.send(`IAMAT telnet ${LOC} ${t}\r\n`);
      assert.match(
        (await s.replies(3 * k + 1, 20_000))[3 * k],
        atLine("Hamilton", "telnet", LOC, t),
      );
      await s.send(`WHATSAT telnet 5 ${k + 1}\r\n`);
      assertWhatsat(
        (await s.replies(3 * k + 2, 20_000))[3 * k + 1],
        "Hamilton",
        "telnet",
        t,
        k + 1,
      );
      await s.send("bogus line here\r\n");
      assert.equal((await s.replies(3 * k + 3, 20_000))[3 * k + 2], "? bogus line here\n");
    }
  } finally {
    await s.close();
  }
  herd.assertHealthy();
});

Deno.test("graders' shapes: two IAMATs out of order at the two farthest servers, and a WHATSAT at the farthest with no sleep", async () => {
  await using fake = startFakeGoogle(KEY);
  await using herd = await ProcessHerd.create({
    topology: TERM_2019,
    args: () => ["--memory", "--places", "legacy", "--places-url", fake.origin],
  });
  await herd.startAll();
  await herd.waitLinksUp();
  for (let i = 0; i < 5; i++) {
    const [a, b] = i % 2 === 0 ? ["Welsh", "Hands"] : ["Hands", "Welsh"];
    // The newer first at one end, the older (5 s before) at the other: both answered; the newer
    // stays everywhere at once.
    const client = `ooo${i}`;
    const newer = timeIn();
    const older = timeIn(-5);
    assert.match(await ask(herd.port(a), `IAMAT ${client} +10+10 ${newer}\n`), /^AT /);
    assert.match(
      await ask(herd.port(b), `IAMAT ${client} +20+20 ${older}\n`),
      atLine(b, client, "+20+20", older),
    );
    for (const name of herd.names) {
      const reply = await ask(herd.port(name), `WHATSAT ${client} 10 1\n`);
      assert.ok(
        reply.startsWith(`AT ${a} `) && reply.includes(` ${client} +10+10 ${newer}\n`),
        `${name}: ${reply}`,
      );
    }
    // IAMAT at one end, WHATSAT three hops away right after the AT reply.
    const t = timeIn();
    assert.match(
      await ask(herd.port(a), `IAMAT far${i} ${LOC} ${t}\n`),
      atLine(a, `far${i}`, LOC, t),
    );
    assertWhatsat(await ask(herd.port(b), `WHATSAT far${i} 10 3\n`), a, `far${i}`, t, 3);
  }
  herd.assertHealthy();
});

Deno.test("graders' shapes: Ctrl-C to a server's group, SIGTERM, SIGKILL; restarted, a WHATSAT 0.1 s after the spawn finds a client reported while it was down", async () => {
  await using fake = startFakeGoogle(KEY);
  await using herd = await ProcessHerd.create({
    topology: TERM_2016,
    // Its own process group, as a terminal's Ctrl-C reaches it.
    wrap: () => ["setsid"],
    args: () => ["--places", "legacy", "--places-url", fake.origin],
  });
  await herd.startAll();
  await herd.waitLinksUp();
  const ways: [string, (pid: number) => void][] = [
    ["Ctrl-C", (pid) => Deno.kill(-pid, "SIGINT")],
    ["SIGTERM", (pid) => Deno.kill(pid, "SIGTERM")],
    ["SIGKILL", (pid) => Deno.kill(pid, "SIGKILL")],
  ];
  for (const [i, [how, stop]] of ways.entries()) {
    const victim = ["Holiday", "Welsh", "Alford"][i];
    const proc = herd.procs.get(victim)!;
    // setsid made the server its group's leader (it did not fork), so -pid is its group.
    const stat = await Deno.readTextFile(`/proc/${proc.pid}/stat`);
    assert.equal(Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]), proc.pid);
    stop(proc.pid);
    const status = await proc.child.status;
    if (how !== "SIGKILL") assert.equal(status.code, 0, `${how}: ${proc.stderr}`);
    const elsewhere = herd.topology[herd.topology[victim][0]].find((n) => n !== victim)!;
    const t = timeIn();
    const client = `down${i}`;
    assert.match(await ask(herd.port(elsewhere), `IAMAT ${client} ${LOC} ${t}\n`), /^AT /);
    const restarted = await herd.spawn(victim);
    await new Promise((r) => setTimeout(r, 100));
    // The script's connection may come before the port listens: it retries as a grader's does.
    let reply = "";
    for (let tries = 0; tries < 200 && reply === ""; tries++) {
      reply = await ask(herd.port(victim), `WHATSAT ${client} 10 2\n`).catch(async () => {
        assert.ok(!restarted.exited, restarted.stderr);
        await new Promise((r) => setTimeout(r, 50));
        return "";
      });
    }
    assertWhatsat(reply, elsewhere, client, t, 2);
    await restarted.waitListening();
  }
  herd.assertHealthy();
});

Deno.test("graders' shapes: `start` as the one process; Ctrl-C to its group exits 0 and frees every port; restarted on its data, a WHATSAT 0.1 s after the spawn finds every record", async () => {
  await using fake = startFakeGoogle(KEY);
  const dir = await Deno.makeTempDir({ prefix: "herd-grader-start-" });
  const names = Object.keys(TERM_2019);
  const ports = leasePorts(names.length);
  const port = (name: string) => ports[names.indexOf(name)];
  const config = `${dir}/herd.json`;
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      servers: Object.fromEntries(
        names.map((n) => [n, { port: port(n), neighbors: TERM_2019[n] }]),
      ),
    }),
  );
  const env = { ...await taskEnv("start"), GOOGLE_PLACES_API_KEY: KEY };
  const spawn = () =>
    new Deno.Command("setsid", {
      args: [
        Deno.execPath(),
        "run",
        ...taskFlags("start"),
        "main.ts",
        "start",
        ...["--config", config, "--log-dir", `${dir}/logs`, "--data-dir", `${dir}/data`],
        ...["--no-dashboard", "--places", "legacy", "--places-url", fake.origin],
      ],
      cwd: ROOT,
      env,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
  /** A grader's connection: retried while refused (the port may not listen yet), 20 s at most. */
  const askSoon = async (name: string, data: string) => {
    for (let tries = 0; tries < 400; tries++) {
      try {
        return await ask(port(name), data);
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    throw new Error(`${name} never answered`);
  };
  const stopped = async (child: Deno.ChildProcess) => {
    const stat = await Deno.readTextFile(`/proc/${child.pid}/stat`);
    // setsid did not fork: the herd is its group's leader, so -pid reaches it as Ctrl-C does.
    assert.equal(Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]), child.pid);
    Deno.kill(-child.pid, "SIGINT");
    const [status, err] = await Promise.all([
      child.status,
      new Response(child.stderr).text(),
    ]);
    assert.equal(status.code, 0, err);
    for (const n of names) {
      await assert.rejects(TcpClient.connect(port(n)), Deno.errors.ConnectionRefused, n);
    }
  };
  let child = spawn();
  try {
    const reported: [string, string, string][] = [];
    for (const [i, name] of ["Welsh", "Hands", "Goloman"].entries()) {
      const t = timeIn();
      assert.match(
        await askSoon(name, `IAMAT keep${i} ${LOC} ${t}\r\n`),
        atLine(name, `keep${i}`, LOC, t),
      );
      reported.push([`keep${i}`, name, t]);
    }
    // The farthest server, at once.
    assertWhatsat(
      await ask(port("Hands"), "WHATSAT keep0 10 2\n"),
      "Welsh",
      "keep0",
      reported[0][2],
      2,
    );
    for (let round = 0; round < 2; round++) {
      await stopped(child);
      child = spawn();
      await new Promise((r) => setTimeout(r, 100));
      for (const [i, [client, origin, t]] of reported.entries()) {
        const at = names[(i + round) % names.length];
        assertWhatsat(await askSoon(at, `WHATSAT ${client} 50 1\n`), origin, client, t, 1);
      }
    }
    await stopped(child);
  } finally {
    try {
      Deno.kill(-child.pid, "SIGKILL");
    } catch {
      // exited
    }
    await child.status;
    await child.stderr.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});
