/**
 * TLS links: with `"tls"` in the config every link and observer stream runs
 * over TLS on each server's `linkPort`, the peer's certificate checked against the herd's CA
 * and the peer's name, the HMAC handshake on top; client ports stay plain TCP. The CA and the
 * certificates are made at run time with `openssl`.
 *
 * - a three-server TLS herd links and floods a record across two TLS links; a proxy on the path
 *   sees no plaintext; a remote dashboard watches over TLS;
 * - a link handshake on a plain client port is refused (`? ...`), and a plain-TCP dialer on the
 *   TLS port gets no CHALLENGE;
 * - a certificate that names another server, or comes from another CA, is refused by the
 *   dialler, which logs why;
 * - a server process under `ulimit -n 256` keeps serving clients, and its neighbour links and
 *   records flow both ways, while 245 connections to its link port never start TLS and 20 send
 *   one byte a second, each coming back when closed (before: 16 of them held every handshake
 *   place for good and the neighbour never linked; earlier still, they took every descriptor); a
 *   TLS connection that sends no HELLO is closed at the 3 s handshake deadline; with the link
 *   port full of silent connections, SIGTERM still stops it;
 * - a dial to a port that accepts and never answers TLS gives up at its deadline and leaves no
 *   socket behind (before: no deadline, since closing a socket in a TLS handshake frees nothing).
 */

import assert from "node:assert/strict";
import { type HerdConfig, parseConfig } from "../servers/config.ts";
import { newNonce } from "../servers/handshake.ts";
import { Herd } from "../servers/herd.ts";
import { openLogs } from "../servers/log.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";
import { RemoteHerd } from "../dashboard/remote_herd.ts";
import { exchange, freePorts, TcpClient, waitFor } from "./_helpers/net.ts";
import { ProcessHerd, PROCS_SECRET, stablePorts, underUlimit } from "./_helpers/procs.ts";
import { RecordingProxy } from "./_helpers/proxy.ts";

const SECRET = "tls-links-test-secret-0123456789";

function haveOpenssl(): boolean {
  try {
    return new Deno.Command("openssl", { args: ["version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

const OPENSSL = haveOpenssl();
const CI = Deno.env.get("CI") === "true";
if (!OPENSSL) {
  console.error(
    `\n!!! openssl is missing: the TLS link tests are ${
      CI ? "FAILING (CI)" : "SKIPPED"
    }. Install it: apt-get install openssl\n`,
  );
}

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", {
    args,
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** A new P-256 key `<file>.key` and, per `kind`, a self-signed CA `<file>.pem` or a CSR. */
async function newKey(dir: string, kind: "ca" | "csr", file: string, cn: string): Promise<void> {
  const out = kind === "ca" ? ["-x509", "-days", "2", "-out", `${file}.pem`] : [
    "-out",
    `${file}.csr`,
  ];
  await openssl(
    dir,
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    `${file}.key`,
    "-subj",
    `/CN=${cn}`,
    ...out,
  );
}

/** A certificate `<file>.pem` (key `<file>.key`) naming `name`, signed by the CA `ca`. */
async function makeCert(dir: string, ca: string, file: string, name: string): Promise<void> {
  await newKey(dir, "csr", file, name);
  await Deno.writeTextFile(`${dir}/${file}.ext`, `subjectAltName=DNS:${name}\n`);
  await openssl(
    dir,
    "x509",
    "-req",
    "-in",
    `${file}.csr`,
    "-CA",
    `${ca}.pem`,
    "-CAkey",
    `${ca}.key`,
    "-CAcreateserial",
    "-out",
    `${file}.pem`,
    "-days",
    "2",
    "-extfile",
    `${file}.ext`,
  );
}

/** CA "ca" with certificates A, B, C, Mallory (all signed by it) and B by the CA "rogue". */
async function makePki(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "tls-links-" });
  await newKey(dir, "ca", "ca", "herd CA");
  await newKey(dir, "ca", "rogue", "rogue CA");
  for (const n of ["A", "B", "C", "Mallory"]) await makeCert(dir, "ca", n, n);
  await makeCert(dir, "rogue", "B-rogue", "B");
  return dir;
}

function tlsConfig(
  dir: string,
  ports: Record<string, [number, number]>,
  links: Record<string, string[]>,
  files: { cert: string; key: string } = { cert: "{name}.pem", key: "{name}.key" },
): HerdConfig {
  const servers: Record<string, unknown> = {};
  for (const [name, [port, linkPort]] of Object.entries(ports)) {
    servers[name] = { port, linkPort, neighbors: links[name] ?? [] };
  }
  return parseConfig({ servers, tls: { ca: "ca.pem", ...files } }, dir);
}

function herdOf(config: HerdConfig, only: string[]): Herd {
  return new Herd(config, {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: SECRET,
    only,
    whatsatGraceMs: 0,
  });
}

Deno.test({
  name:
    "tls links: a TLS herd links and floods, a proxy on the path reads nothing, plain dialers are refused",
  ignore: !OPENSSL && !CI,
  fn: async () => {
    const dir = await makePki();
    const [a, aLink, b, bLink, c, cLink, nowhere] = freePorts(7);
    const proxy = RecordingProxy.start(bLink);
    const links = { A: ["B"], B: ["C"] };
    // A reaches B's link port only through the proxy; B's dials to A go nowhere.
    const configA = tlsConfig(dir, { A: [a, aLink], B: [b, proxy.port], C: [c, cLink] }, links);
    const configBC = tlsConfig(dir, { A: [a, nowhere], B: [b, bLink], C: [c, cLink] }, links);
    const herdA = herdOf(configA, ["A"]);
    const herdBC = herdOf(configBC, ["B", "C"]);
    const logs = await openLogs(herdA.bus, dir, ["A"]);
    const remote = new RemoteHerd(configBC, { secret: SECRET, observer: "dash" });
    try {
      await herdBC.start();
      await herdA.start();
      const up = () =>
        herdA.servers.get("A")!.links[0].up &&
        [...herdBC.servers.values()].every((s) => s.links.every((l) => l.up));
      await waitFor(up, 10_000, "TLS links up");

      // A record crosses two TLS links; the client ports are plain TCP.
      const at = await exchange(a, "IAMAT tls.kiwi +34.068930-118.445127 1700000000\n");
      assert.match(at, /^AT A /);
      await waitFor(
        async () => (await exchange(c, "WHATSAT tls.kiwi 10 0\n")).startsWith(at),
        3000,
        "the record at C",
      );
      // The proxy carried the A-B link and saw only ciphertext.
      assert.ok(proxy.sessions.length > 0 && proxy.sessions[0].fromClient.length > 0);
      for (const r of proxy.sessions) {
        assert.doesNotMatch(r.fromClient + r.fromServer, /HERD2|SYNC|tls\.kiwi|34\.068930/);
      }

      // A dashboard watches over TLS.
      remote.start();
      await waitFor(() => remote.status().B?.status === "watching", 5000, "observer on B");

      // A link handshake on the plain client port is refused like any invalid line.
      const hello = `HERD2 HELLO peer B A ${newNonce()}`;
      assert.equal(await exchange(a, `${hello}\n`), `? ${hello}\n`);
      await logs.flush();
      assert.match(
        await Deno.readTextFile(`${dir}/A.log`),
        new RegExp(
          `PEER REJECTED \\S+ \\(handshake on the plain port: links use TLS on port ${aLink}\\)`,
        ),
      );
      // A plain-TCP dialer on the TLS port gets no CHALLENGE (and nothing readable).
      const plain = await TcpClient.connect(aLink);
      await plain.send(`${hello}\n`);
      const got = await plain.waitEof(3000).catch(() => plain.received);
      await plain.close();
      assert.doesNotMatch(got, /HERD2|CHALLENGE/);
      assert.equal(herdA.servers.get("A")!.links[0].up, true, "the real link stays up");
    } finally {
      await remote.stop();
      await herdA.stop();
      await herdBC.stop();
      await logs.close();
      await proxy.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "tls links: a certificate naming another server, or from another CA, is refused and logged",
  ignore: !OPENSSL && !CI,
  fn: async () => {
    const dir = await makePki();
    const [a, aLink, b, bLink, nowhere] = freePorts(5);
    const configA = tlsConfig(dir, { A: [a, aLink], B: [b, bLink] }, { A: ["B"] });
    const herdA = herdOf(configA, ["A"]);
    const logs = await openLogs(herdA.bus, dir, ["A"]);
    const cases: [string, { cert: string; key: string }, RegExp][] = [
      ["names Mallory", { cert: "Mallory.pem", key: "Mallory.key" }, /not valid for name "B"/],
      ["another CA", { cert: "B-rogue.pem", key: "B-rogue.key" }, /UnknownIssuer|unknown issuer/i],
    ];
    try {
      await herdA.start();
      for (const [what, files, reason] of cases) {
        // B with the wrong certificate; its own dials to A go nowhere.
        const configB = tlsConfig(dir, { A: [a, nowhere], B: [b, bLink] }, { A: ["B"] }, files);
        const herdB = herdOf(configB, ["B"]);
        await herdB.start();
        try {
          await waitFor(
            async () => {
              await logs.flush();
              const log = await Deno.readTextFile(`${dir}/A.log`);
              return new RegExp(`PEER REJECTED B \\(TLS with B: .*${reason.source}`, "i").test(log);
            },
            5000,
            `A to refuse B's certificate (${what})`,
          );
          assert.equal(herdA.servers.get("A")!.links[0].up, false, what);
          assert.equal(herdB.servers.get("B")!.links[0].up, false, what);
        } finally {
          await herdB.stop();
        }
      }
    } finally {
      await herdA.stop();
      await logs.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * An attacker holding `silent` connections that never send a byte and `slow` ones that send one
 * byte a second (the start of a ClientHello), each reconnecting 250 ms after it is closed (a
 * pause only to spare the shared test machine a reconnect storm).
 */
function attack(port: number, silent: number, slow: number) {
  let stopped = false;
  const open = new Set<TcpClient>();
  const counts = { opened: 0 };
  const hold = async (trickle: boolean) => {
    while (!stopped) {
      let c: TcpClient;
      try {
        c = await TcpClient.connect(port);
      } catch {
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      open.add(c);
      counts.opened++;
      // A ClientHello's record header, then more of it, one byte a second.
      const hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];
      for (let i = 0; !stopped && !c.eof; i++) {
        if (trickle) await c.send(new Uint8Array([hello[i % hello.length]])).catch(() => {});
        await c.waitUntil(() => false, 1000).catch(() => {});
      }
      open.delete(c);
      await c.close();
      if (!stopped) await new Promise((r) => setTimeout(r, 250));
    }
  };
  const loops = [
    ...Array.from({ length: silent }, () => hold(false)),
    ...Array.from({ length: slow }, () => hold(true)),
  ];
  return {
    open,
    counts,
    async stop() {
      stopped = true;
      await Promise.all([...open].map((c) => c.close()));
      await Promise.all(loops);
    },
  };
}

Deno.test({
  name:
    "tls links: silent and slow connections to a link port under ulimit -n 256 lock out neither clients nor neighbours, and a TLS connection with no HELLO is closed at the handshake deadline",
  ignore: !OPENSSL && !CI,
  fn: async () => {
    const pki = await makePki();
    // B runs as a process under ulimit 256; its neighbour A (in this process) dials it: A's
    // name sorts first, and B's own dials to A go nowhere, so the link needs B's link port.
    const herd = await ProcessHerd.create({ topology: { B: [] }, wrap: () => underUlimit(256) });
    const port = herd.port("B");
    const [linkPort] = stablePorts(1);
    const [a, aLink, nowhere] = freePorts(3);
    const config = `${herd.dir}/tls.json`;
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        servers: {
          A: { port: a, linkPort: nowhere, neighbors: ["B"] },
          B: { port, linkPort },
        },
        tls: { ca: `${pki}/ca.pem`, cert: `${pki}/{name}.pem`, key: `${pki}/{name}.key` },
      }),
    );
    const herdA = new Herd(
      tlsConfig(pki, { A: [a, aLink], B: [port, linkPort] }, { A: ["B"] }),
      {
        ...SERVER_DEFAULTS,
        places: createOfflineProvider(),
        secret: PROCS_SECRET,
        only: ["A"],
        whatsatGraceMs: 0,
      },
    );
    const silent: TcpClient[] = [];
    let attacker: ReturnType<typeof attack> | undefined;
    let tls: Deno.TlsConn | undefined;
    try {
      const proc = await herd.start("B", ["--memory"], config);
      const open = () => [...Deno.readDirSync(`/proc/${proc.pid}/fd`)].length;
      const before = open();
      // 245 connections that never send a ClientHello (the adversarial review's count), and 20
      // that send one byte a second; each comes back as soon as it is closed.
      attacker = attack(linkPort, 245, 20);
      await waitFor(() => attacker!.counts.opened >= 265, 20_000, "the attacker's connections");
      // What the attack holds, sampled over two seconds. A wave of reconnects is accepted
      // before the connections it displaces are closed, so a sample may catch one in flight.
      const samples: number[] = [];
      for (let i = 0; i < 10; i++) {
        await new Promise((r) => setTimeout(r, 200));
        samples.push(open() - before);
      }
      samples.sort((x, y) => x - y);
      const held = samples[5];
      console.log(
        `descriptors of B: ${before} before; with 265 attacking connections +${held} (median), ` +
          `+${samples[9]} (most)`,
      );
      // At most 8 connections before the end of TLS under 256 open files (three descriptors each:
      // a quarter of the 64 reserved), the others closed at once, and no more accepted while 16
      // are not yet closed: never the reserve's 64, so the clients' share is untouched (before
      // the front: 245 held every descriptor, or 16 held every handshake place; without the
      // bound on those being closed, waves of reconnects reached +92 on a loaded machine).
      assert.ok(held < 64, `265 attacking link connections hold ${held} descriptors`);
      // And says so in its log: each new connection takes a trickler's place.
      assert.match(await herd.log("B"), /TLS link handshakes at the cap \(8 pending\)/);
      // Clients are served while they are held, every time.
      for (let i = 0; i < 3; i++) {
        const reply = await exchange(
          port,
          `IAMAT silent.${i} +34.068930-118.445127 1700000000\n`,
          5000,
        );
        assert.match(reply, /^AT B /, `client ${i} while the link port is under attack`);
      }
      // The neighbour links while they are held, and records flow both ways.
      await herdA.start();
      await waitFor(() => herdA.servers.get("A")!.links[0].up, 15_000, "A linked to B");
      const opened = attacker.counts.opened;
      console.log(`the attacker opened ${opened} connections so far`);
      const atA = await exchange(a, "IAMAT from.a +34.068930-118.445127 1700000000\n");
      await waitFor(
        async () => (await exchange(port, "WHATSAT from.a 10 0\n")).startsWith(atA),
        5000,
        "A's record at B",
      );
      const atB = await exchange(port, "IAMAT from.b +34.068930-118.445127 1700000000\n");
      await waitFor(
        async () => (await exchange(a, "WHATSAT from.b 10 0\n")).startsWith(atB),
        5000,
        "B's record at A",
      );
      await herdA.stop();
      await attacker.stop();
      // Once they go, the link port handshakes again (TLS, then a HELLO gets its CHALLENGE).
      const ca = await Deno.readTextFile(`${pki}/ca.pem`);
      const dialB = async () => {
        const tcp = await Deno.connect({ hostname: "127.0.0.1", port: linkPort });
        const conn = await Deno.startTls(tcp, { hostname: "B", caCerts: [ca] });
        await conn.handshake();
        return conn;
      };
      const hello = await dialB();
      try {
        await hello.write(new TextEncoder().encode(`HERD2 HELLO observer dash B ${newNonce()}\n`));
        const got = new Uint8Array(512);
        const n = await hello.read(got);
        assert.match(new TextDecoder().decode(got.subarray(0, n ?? 0)), /^HERD2 CHALLENGE B dash /);
      } finally {
        hello.close();
      }
      tls = await dialB();
      // A TLS connection that sends no HELLO is closed at the handshake deadline (3 s).
      const started = performance.now();
      const read = await Promise.race([
        tls.read(new Uint8Array(64)).catch(() => null),
        new Promise<"open">((r) => setTimeout(() => r("open"), 8000)),
      ]);
      const ms = Math.round(performance.now() - started);
      assert.equal(read, null, `a TLS connection with no HELLO still open after ${ms} ms`);
      assert.ok(ms > 2000, `closed after ${ms} ms, before the handshake deadline`);
      // With the link port full of silent connections, the server still stops when told to.
      for (let i = 0; i < 40; i++) silent.push(await TcpClient.connect(linkPort));
      await new Promise((r) => setTimeout(r, 500));
      proc.child.kill("SIGTERM");
      const status = await Promise.race([
        proc.child.status,
        new Promise<"running">((r) => setTimeout(() => r("running"), 10_000)),
      ]);
      assert.notEqual(status, "running", "still running 10 s after SIGTERM");
      assert.equal(status === "running" ? undefined : status.code, 0, proc.stderr);
    } finally {
      await herdA.stop();
      await attacker?.stop();
      await Promise.all(silent.map((c) => c.close()));
      try {
        tls?.close();
      } catch {
        // closed already
      }
      await herd.close();
      await Deno.remove(pki, { recursive: true });
    }
  },
});

Deno.test('tls links: a bad "tls" config or a missing certificate is one clear error', async () => {
  const bad: [unknown, RegExp][] = [
    [{ servers: { A: { port: 1, linkPort: 2 } }, tls: { ca: "ca.pem" } }, /"tls" must be/],
    [{ servers: { A: { port: 1 } }, tls: { ca: "c", cert: "c", key: "k" } }, /"linkPort" must be/],
    [
      {
        servers: { A: { port: 1, linkPort: 2 }, B: { port: 2 } },
        tls: { ca: "c", cert: "c", key: "k" },
      },
      /B: port 2 is already used by A/,
    ],
    [
      { servers: { A: { port: 1, linkPort: 1 } }, tls: { ca: "c", cert: "c", key: "k" } },
      /link port 1/,
    ],
  ];
  for (const [json, re] of bad) assert.throws(() => parseConfig(json), re);
  const dir = await Deno.makeTempDir({ prefix: "tls-links-" });
  try {
    const [a, aLink] = freePorts(2);
    const herd = herdOf(tlsConfig(dir, { A: [a, aLink] }, {}), ["A"]);
    await assert.rejects(herd.start(), /cannot read TLS CA .*ca\.pem/);
    // Nothing was left listening.
    Deno.listen({ hostname: "127.0.0.1", port: a }).close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "tls links: a dial to a link port that never answers TLS gives up at the handshake deadline, and leaves no socket behind",
  ignore: !OPENSSL && !CI,
  fn: async () => {
    const pki = await makePki();
    // A "peer" that accepts and never says a word (hung, or someone else holding its port).
    const mute = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const held: Deno.Conn[] = [];
    const accepting = (async () => {
      for await (const c of mute) held.push(c);
    })().catch(() => {});
    // The dialler runs in a process of its own, so its descriptor count is its own (test files
    // run in parallel in this one).
    const script = `${pki}/dial.ts`;
    await Deno.writeTextFile(
      script,
      `import { dialTls } from ${
        JSON.stringify(new URL("../servers/tls.ts", import.meta.url).href)
      };
const ca = Deno.readTextFileSync(${JSON.stringify(`${pki}/ca.pem`)});
const peer = { name: "B", host: "127.0.0.1", linkPort: ${(mute.addr as Deno.NetAddr).port} };
// TCP sockets only: the runtime opens other descriptors (a Unix socket pair) on first use.
const open = () => {
  const tcp = new Set<string>();
  for (const table of ["/proc/self/net/tcp", "/proc/self/net/tcp6"]) {
    for (const line of Deno.readTextFileSync(table).split("\\n").slice(1)) {
      const inode = line.trim().split(/\\s+/)[9];
      if (inode !== undefined && inode !== "0") tcp.add(inode);
    }
  }
  let n = 0;
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      const m = /^socket:\\[(\\d+)\\]$/.exec(Deno.readLinkSync("/proc/self/fd/" + e.name));
      if (m !== null && tcp.has(m[1])) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
};
const before = open();
const outcomes = [];
for (let i = 0; i < 10; i++) {
  const started = performance.now();
  const outcome = await Promise.race([
    dialTls(peer, ca, undefined, 300).then(() => "linked", (err) => String(err)),
    new Promise((r) => setTimeout(() => r("still waiting"), 5000)),
  ]);
  outcomes.push(outcome + " after " + Math.round(performance.now() - started) + " ms");
  if (outcome === "still waiting") break;
}
const deadline = performance.now() + 5000;
while (open() > before && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
console.log(JSON.stringify({ outcomes, before, after: open() }));
Deno.exit(0);
`,
    );
    try {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", "--config=deno.json", "--lock=tests/deno.lock", script],
        cwd: new URL("..", import.meta.url).pathname,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      const got = JSON.parse(text) as { outcomes: string[]; before: number; after: number };
      assert.equal(got.outcomes.length, 10, got.outcomes.join("\n"));
      for (const o of got.outcomes) {
        assert.match(o, /^LinkTlsError: TLS with B: handshake timeout \(300 ms\) after \d+ ms$/);
      }
      // Each attempt's sockets are closed for real while the mute peer still holds its end.
      console.log(
        `dialler's descriptors: ${got.before} before, ${got.after} after 10 timed-out dials`,
      );
      assert.equal(got.after, got.before, "the dialler's descriptors after the timed-out dials");
      // And the peer saw each connection end.
      await waitFor(() => held.length === 10, 5_000, "the mute peer's 10 connections");
      for (const c of held) {
        const n = await c.read(new Uint8Array(4096)).catch(() => null);
        const rest = n === null ? null : await c.read(new Uint8Array(4096)).catch(() => null);
        assert.equal(rest, null, "a dialled connection still open at the peer");
      }
    } finally {
      mute.close();
      await accepting;
      for (const c of held) c.close();
      await Deno.remove(pki, { recursive: true });
    }
  },
});
