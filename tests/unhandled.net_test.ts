/**
 * Nothing unhandled: a WHATSAT whose handling fails (a corrupt
 * stored record, a hostile Places body) answers in protocol layout and emits an `error` event;
 * the server stays up. Deno's test runner fails a test that leaves an unhandled rejection, so a
 * crash path here fails the test even where the reply looks right.
 */

import assert from "node:assert/strict";
import { exchange, freePorts, TcpClient, waitFor } from "./_helpers/net.ts";
import { Herd } from "../servers/herd.ts";
import { parseConfig } from "../servers/config.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";
import { createGoogleLegacyProvider } from "../servers/places/google_legacy.ts";
import type { PlacesProvider } from "../servers/places/provider.ts";
import { openLogPersistence } from "../servers/persist.ts";
import { RecordStore } from "../servers/store.ts";
import type { AtFields } from "../servers/record.ts";
import { errorBus, storedRecord } from "./_helpers/records.ts";

const KEY = "unhandled-test-key-0123456789";

/** One server "A" (its neighbour B is never started) with the given Places provider. */
async function startA(places: PlacesProvider) {
  const [port, other] = freePorts(2);
  const config = parseConfig({ servers: { A: { port, neighbors: ["B"] }, B: { port: other } } });
  const herd = new Herd(config, {
    ...SERVER_DEFAULTS,
    places,
    secret: "unhandled-test-secret-0123456789",
    only: ["A"],
    whatsatGraceMs: 0,
  });
  const errors: string[] = [];
  // A subscriber makes the bus active, so every reply is also reported as an event.
  herd.bus.subscribe((e) => {
    if (e.kind === "error") errors.push(e.message);
  });
  await herd.start();
  return { herd, port, errors, server: herd.servers.get("A")! };
}

Deno.test("unhandled: a corrupt stored record answers `?` with an error event; the server stays up", async () => {
  const a = await startA(createOfflineProvider());
  try {
    // As if one digit of the location had been corrupted on disk.
    a.server.store.restore({
      origin: "A",
      diff: "+0.100000000",
      client: "corrupt",
      location: "+34.06x930-118.445127",
      time: "1700000000",
      seq: 1,
      via: -1,
    });
    assert.deepEqual(await exchange(a.port, "WHATSAT corrupt 10 5\n"), "? WHATSAT corrupt 10 5\n");
    assert.deepEqual(a.errors.length, 1, a.errors.join("; "));
    assert.match(a.errors[0], /^command failed: /);
    const at = await exchange(a.port, `IAMAT fine +1+1 ${Math.floor(Date.now() / 1000)}\n`);
    assert.ok(at.startsWith("AT A "), at);
  } finally {
    await a.herd.stop();
  }
});

/** A hostile Places upstream: the body for each request is whatever `body()` gives. */
function hostileUpstream(body: () => BodyInit, headers: Record<string, string> = {}) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response(body(), { headers: { "content-type": "application/json", ...headers } }),
  );
  return { origin: `http://127.0.0.1:${server.addr.port}`, close: () => server.shutdown() };
}

/** A legacy body whose `results` nests `depth` arrays deep. */
function nested(depth: number): string {
  return `{"html_attributions":[],"results":[${"[".repeat(depth)}${"]".repeat(depth)}],` +
    `"status":"OK"}`;
}

/** A stream of `total` bytes of one JSON string, with no Content-Length. */
function hugeStream(total: number): ReadableStream<Uint8Array> {
  const chunk = new TextEncoder().encode("x".repeat(64 * 1024));
  let sent = 0;
  return new ReadableStream({
    start(c) {
      c.enqueue(new TextEncoder().encode('{"status":"OK","results":[{"name":"'));
    },
    pull(c) {
      if (sent >= total) {
        c.enqueue(new TextEncoder().encode('"}],"html_attributions":[]}'));
        c.close();
        return;
      }
      c.enqueue(chunk);
      sent += chunk.length;
    },
  });
}

const HOSTILE: [string, () => BodyInit, RegExp][] = [
  ["nested 100,000 deep", () => nested(100_000), /nested too deep/],
  ["nested 2,000 deep", () => nested(2_000), /nested too deep/],
  ["16 MiB, no Content-Length", () => hugeStream(16 * 1024 * 1024), /too large/],
  [
    "2 MiB with its Content-Length",
    () => `{"status":"OK","x":"${"y".repeat(2 << 20)}"}`,
    /too large/,
  ],
];

for (const [what, body, message] of HOSTILE) {
  Deno.test(`unhandled: a Places body ${what} is answered in the error layout`, async () => {
    const upstream = hostileUpstream(body);
    const a = await startA(
      createGoogleLegacyProvider({ apiKey: KEY, baseUrl: upstream.origin, timeoutMs: 20_000 }),
    );
    const c = await TcpClient.connect(a.port);
    try {
      const now = Math.floor(Date.now() / 1000);
      await c.send(`IAMAT kiwi +34.068930-118.445127 ${now}\n`);
      await c.waitUntil((r) => r.endsWith("\n"));
      const atLine = c.received.slice(0, -1);
      const before = c.received.length;
      await c.send("WHATSAT kiwi 10 5\n");
      const text = (await c.waitUntil((r) => r.endsWith("}\n\n"), 30_000)).slice(before);
      assert.ok(text.startsWith(atLine + "\n{\n"), text.slice(0, 200));
      assert.ok(text.length < 1000, `a short reply, got ${text.length} bytes`);
      const json = JSON.parse(text.slice(atLine.length + 1));
      assert.deepEqual(json.status, "UNKNOWN_ERROR");
      assert.deepEqual(json.results, []);
      assert.match(json.error_message, message);
      assert.ok(!text.includes(KEY), "no key in the reply");
      assert.deepEqual(a.errors.length, 1, a.errors.join("; "));
      assert.match(a.errors[0], message);
      // Still serving, on the same connection.
      await c.send(`IAMAT kiwi2 +1+1 ${now}\n`);
      await c.waitUntil((r) => r.slice(before).includes("AT A "), 5000);
    } finally {
      await c.close();
      await a.herd.stop();
      await upstream.close();
    }
  });
}

Deno.test("unhandled: a provider's body too deep to format is answered in the error layout", async () => {
  // Built iteratively: a body from any provider, not only from upstream text.
  let deep: unknown = [];
  for (let i = 0; i < 100_000; i++) deep = [deep];
  const provider: PlacesProvider = {
    name: "stub",
    search: () =>
      Promise.resolve({
        body: { html_attributions: [], results: [{ name: "deep", deep }], status: "OK" },
      }),
  };
  const a = await startA(provider);
  // What the log summarises the reply with: the body actually sent, not the provider's.
  const summaries: unknown[] = [];
  const off = a.herd.bus.subscribe((e) => {
    if (e.kind === "reply.out" && e.places !== undefined) summaries.push(e.places);
  });
  try {
    const now = Math.floor(Date.now() / 1000);
    const text = await exchange(a.port, `IAMAT kiwi +1+1 ${now}\nWHATSAT kiwi 10 5\n`);
    const lines = text.split("\n");
    assert.match(lines[0], /^AT A /);
    assert.match(lines[1], /^AT A /);
    assert.ok(text.endsWith("}\n\n"), text.slice(-50));
    const json = JSON.parse(lines.slice(2).join("\n"));
    assert.deepEqual(json.status, "UNKNOWN_ERROR");
    assert.match(json.error_message, /could not be formatted/);
    assert.deepEqual(a.errors.length, 1, a.errors.join("; "));
    assert.deepEqual(summaries, [{ status: "UNKNOWN_ERROR", results: 0 }]);
  } finally {
    off();
    await a.herd.stop();
  }
});

/** Things a buggy subscriber might throw, some of which do not even convert to text. */
const THROWN: (() => unknown)[] = [
  () => new Error("subscriber bug\x1b[2J\nsecond line"),
  () => Symbol("thrown symbol"),
  () => Object.create(null),
  () => ({
    toString: () => {
      throw new Error("toString bug");
    },
  }),
];

Deno.test("unhandled: a subscriber that throws anything on every event costs no reply, no record, no flood", async () => {
  const [a, b] = freePorts(2);
  const config = parseConfig({ servers: { A: { port: a, neighbors: ["B"] }, B: { port: b } } });
  const herd = new Herd(config, {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: "unhandled-test-secret-0123456789",
    whatsatGraceMs: 0,
  });
  let n = 0;
  herd.bus.subscribe(() => {
    throw THROWN[n++ % THROWN.length]();
  });
  const printed: string[] = [];
  const consoleError = console.error;
  console.error = (...args: unknown[]) => void printed.push(args.map(String).join(" "));
  try {
    await herd.start();
    await waitFor(() => herd.servers.get("A")!.links.every((l) => l.up), 10_000, "link up");
    const now = Math.floor(Date.now() / 1000);
    for (let i = 0; i < 20; i++) {
      const reply = await exchange(a, `IAMAT thrown.${i} +34.068930-118.445127 ${now}\n`);
      assert.match(reply, new RegExp(`^AT A \\S+ thrown\\.${i} `), reply);
    }
    // Flooded all the same: B has every record.
    for (let i = 0; i < 20; i++) {
      await waitFor(
        () => herd.servers.get("B")!.store.get(`thrown.${i}`) !== undefined,
        10_000,
        `thrown.${i} at B`,
      );
    }
    assert.match(await exchange(b, "WHATSAT thrown.0 10 1\n"), /^AT A /);
    assert.ok(n > 100, `only ${n} events`);
    // Said, not once per event (stderr writes block when nobody drains them), one line each.
    assert.ok(printed.length > 0 && printed.length <= 12, `${printed.length} lines for ${n}`);
    for (const line of printed) assert.ok(!/[\x00-\x1f]/.test(line), JSON.stringify(line));
    assert.match(printed[0], /subscriber bug/);
  } finally {
    console.error = consoleError;
    await herd.stop();
  }
});

Deno.test("unhandled: a bug in one dial costs that dial (an error event), never the link's redials", async () => {
  const [a, b] = freePorts(2);
  const config = parseConfig({ servers: { A: { port: a, neighbors: ["B"] }, B: { port: b } } });
  const opts = {
    ...SERVER_DEFAULTS,
    places: createOfflineProvider(),
    secret: "unhandled-test-secret-0123456789",
    whatsatGraceMs: 0,
  };
  const herdA = new Herd(config, { ...opts, only: ["A"] });
  const herdB = new Herd(config, { ...opts, only: ["B"] });
  const errors: string[] = [];
  herdA.bus.subscribe((e) => {
    if (e.kind === "error") errors.push(e.message);
  });
  // A bug where a failed dial is reported (B is not up yet): before, it rejected the link's dial
  // loop, which nobody awaits: an unhandled rejection (the end of the process), and no redial.
  const serverA = herdA.servers.get("A")!;
  const dialFailed = serverA.dialFailed.bind(serverA);
  let bugs = 0;
  serverA.dialFailed = (link, inconclusive) => {
    if (bugs++ < 3) throw new Error("injected dial bug");
    dialFailed(link, inconclusive);
  };
  try {
    await herdA.start();
    await waitFor(() => bugs >= 3, 10_000, "three failed dials");
    await herdB.start();
    await waitFor(() => serverA.links[0].up, 10_000, "A-B up after the bugs");
    assert.ok(errors.some((m) => /injected dial bug/.test(m)), errors.join("; "));
  } finally {
    await herdB.stop();
    await herdA.stop();
  }
});

/** A store whose first `supersededAt` check throws: a bug met inside one record-log commit. */
class BuggyStore extends RecordStore {
  bugs = 1;
  override supersededAt(fields: AtFields, seq: number): boolean {
    if (this.bugs-- > 0) throw new Error("injected commit bug");
    return super.supersededAt(fields, seq);
  }
}

Deno.test("unhandled: a bug in one record-log commit costs that commit, never the ones after it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unhandled_commit_" });
  try {
    const { bus, errors } = errorBus();
    const store = new BuggyStore();
    const log = await openLogPersistence(dir, "Hill");
    await log.load(store, [], bus);
    const a = storedRecord("bug.a", 1);
    store.restore(a);
    log.saved(a);
    // That commit meets the bug. Before, the commit chain stayed rejected: this flush and every
    // one after it rejected, and the commit timers' own (nobody awaits them) were unhandled
    // rejections: the end of the process, and no record written again.
    await log.flush().catch(() => {});
    const b = storedRecord("bug.b", 2);
    store.restore(b);
    log.saved(b);
    await log.flush();
    await log.close();
    assert.ok(errors.some((e) => /injected commit bug/.test(e.message)), "the bug is reported");
    const again = new RecordStore();
    const reopened = await openLogPersistence(dir, "Hill");
    await reopened.load(again, [], errorBus().bus);
    await reopened.close();
    assert.ok(again.get("bug.a") !== undefined && again.get("bug.b") !== undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
