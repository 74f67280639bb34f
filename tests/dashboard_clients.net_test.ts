/**
 * The dashboard's client endpoints against the real herd (five servers over TCP in this process,
 * clients loaded with bench/bulk.ts over TCP), through `app.request()`: exact totals beyond the
 * old 2,000-record snapshot, the map's clusters, the prefix search, one client's panel (each
 * server's record, the propagation path, the trail), and a JSON error for every bad input.
 */

import assert from "node:assert/strict";
import { clientTime, exchange, startSeedHerd, type TestHerd, waitFor } from "./_helpers/net.ts";
import { createDashboard, type DashboardApp } from "../dashboard/app.ts";
import { bulkClient, bulkLoad } from "../bench/bulk.ts";
import type { ClientDetail, ClusterResult, SearchResult } from "../dashboard/types.ts";

const PORT = 8080;
const ASSETS = { built: false, islands: {}, chunks: [], styleUrl: "/static/style.css" };
/** More than the 2,000 records a snapshot carries. */
const COUNT = 2_500;

function dashboardFor(h: TestHerd): DashboardApp {
  return createDashboard(h.herd, { host: "127.0.0.1", port: PORT, assets: ASSETS });
}

async function get(d: DashboardApp, path: string): Promise<{ status: number; body: unknown }> {
  const res = await d.app.request(`http://127.0.0.1:${PORT}${path}`, {
    headers: { host: `127.0.0.1:${PORT}` },
  });
  const text = await res.text();
  let body: unknown = text;
  if ((res.headers.get("content-type") ?? "").includes("json")) body = JSON.parse(text);
  return { status: res.status, body };
}

/** Loads COUNT bulk clients over TCP and waits until every server holds them. */
async function loadClients(h: TestHerd): Promise<void> {
  const ports = h.config.servers.map((s) => s.port);
  const r = await bulkLoad({
    ports,
    count: COUNT,
    prefix: "c",
    connectionsPerPort: 1,
    window: 256,
    timeoutMs: 60_000,
  });
  assert.deepEqual(r.errors, 0, r.errorSamples.join("; "));
  await waitFor(
    () => h.herd.snapshot(0).servers.every((s) => s.records >= COUNT),
    60_000,
    "every server to hold the bulk clients",
  );
}

Deno.test({
  name:
    "client endpoints: exact totals, clusters, search, a client's panel; bad input is a JSON 400",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const h = await startSeedHerd();
    const d = dashboardFor(h);
    try {
      await loadClients(h);

      await t.step("the total is exact beyond the snapshot's 2,000 records", async () => {
        const state = (await get(d, "/api/state?records=0")).body as { clients: number };
        assert.deepEqual(state.clients, COUNT);
        const page = (await get(d, "/")).body as string;
        assert.match(page, /data-testid="client-count">2,500</);
        assert.match(page, /World map with 2,500 clients/);
        // A dashboard started beside a herd that already holds them reads them in (in slices).
        const late = dashboardFor(h);
        try {
          await late.dashboard.clients.seeded;
          const s = (await get(late, "/api/state?records=0")).body as {
            clients: number;
            exact: boolean;
          };
          assert.deepEqual([s.clients, s.exact], [COUNT, true]);
        } finally {
          late.close();
        }
      });

      await t.step("clusters: every client counted once; zooming in splits groups", async () => {
        const world = (await get(d, "/api/clusters")).body as ClusterResult;
        assert.deepEqual(world.total, COUNT);
        assert.deepEqual(world.inView, COUNT);
        assert.deepEqual(world.clusters.reduce((n, c) => n + c.n, 0), COUNT);
        // The bulk clients lie within a degree of Los Angeles: one group at zoom 0.
        assert.deepEqual(world.clusters.length, 1);
        const c = world.clusters[0];
        const box = [c.x - 2, c.y - 2, c.x + 2, c.y + 2].join(",");
        const near = (await get(d, `/api/clusters?z=10&bbox=${box}`)).body as ClusterResult;
        assert.deepEqual(near.inView, COUNT);
        assert.deepEqual(near.clusters.reduce((n, c) => n + c.n, 0), COUNT);
        assert.ok(near.clusters.length > 50, `only ${near.clusters.length} groups at zoom 10`);
        const deep = (await get(
          d,
          `/api/clusters?z=16&bbox=${[c.x - 0.03, c.y - 0.03, c.x + 0.03, c.y + 0.03].join(",")}`,
        )).body as ClusterResult;
        assert.ok(deep.clusters.some((g) => g.n === 1 && g.client?.endsWith(".bench.example")));
        const lone = deep.clusters.find((g) => g.n === 1)!;
        assert.match(lone.rec!.location, /^\+33\.\d+-118\.\d+$/);
        // Off the map entirely: nothing, not an error.
        const off = (await get(d, "/api/clusters?z=3&bbox=2000,2000,2100,2100"))
          .body as ClusterResult;
        assert.deepEqual([off.inView, off.clusters.length, off.total], [0, 0, COUNT]);
      });

      await t.step("search: a prefix's count and its first matches in ID order", async () => {
        // c12, c120..c129, c1200..c1299 (and c12xx... up to c2499 has none more)
        const r = (await get(d, "/api/clients?prefix=c12&limit=5")).body as SearchResult;
        assert.deepEqual(r.total, 111);
        assert.deepEqual(r.clients.map((x) => x.client), [
          bulkClient("c", 12),
          bulkClient("c", 120),
          bulkClient("c", 1200),
          bulkClient("c", 1201),
          bulkClient("c", 1202),
        ]);
        const all = (await get(d, "/api/clients?limit=100")).body as SearchResult;
        assert.deepEqual(all.total, COUNT);
        assert.deepEqual(all.clients.length, 100);
        const none = (await get(d, "/api/clients?prefix=zz")).body as SearchResult;
        assert.deepEqual([none.total, none.clients.length], [0, 0]);
        // A client added after the list was sorted is found too.
        await exchange(h.port("Hill"), `IAMAT c12zz.new +10+10 ${clientTime()}\n`);
        await waitFor(
          async () => ((await get(d, "/api/clients?prefix=c12z")).body as SearchResult).total === 1,
          5000,
          "the new client in the search",
        );
      });

      await t.step("a client's panel: each server's record, the path, the trail", async () => {
        const id = "follow.me";
        await exchange(h.port("Smith"), `IAMAT ${id} +34.0-118.0 ${clientTime()}\n`);
        await waitFor(
          async () => {
            const r = await get(d, `/api/client?id=${id}`);
            return r.status === 200 && (r.body as ClientDetail).path.length === 5;
          },
          5000,
          "the record at all five servers",
        );
        let c = (await get(d, `/api/client?id=${id}`)).body as ClientDetail;
        assert.deepEqual(c.newest.origin, "Smith");
        assert.deepEqual(c.holdings.map((x) => x.state), Array(5).fill("current"));
        assert.deepEqual(c.path[0].server, "Smith");
        assert.deepEqual(c.path[0].from, null);
        // Every later step names the neighbour it came from, one that had it already.
        const had = new Set(["Smith"]);
        for (const hop of c.path.slice(1)) {
          assert.ok(hop.from !== null && had.has(hop.from), `${hop.server} from ${hop.from}`);
          had.add(hop.server);
        }
        assert.deepEqual(had.size, 5);

        // Campbell stops; the client moves: Campbell's copy is behind, the trail has two points.
        await h.herd.stopServer("Campbell");
        await exchange(h.port("Hill"), `IAMAT ${id} +35.0-117.0 ${clientTime(1000)}\n`);
        await waitFor(
          async () =>
            ((await get(d, `/api/client?id=${id}`)).body as ClientDetail).path.length === 4,
          5000,
          "the move at the four running servers",
        );
        c = (await get(d, `/api/client?id=${id}`)).body as ClientDetail;
        assert.deepEqual(c.newest.origin, "Hill");
        const campbell = c.holdings.find((x) => x.server === "Campbell")!;
        assert.deepEqual([campbell.state, campbell.running], ["behind", false]);
        assert.deepEqual(campbell.record?.location, "+34.0-118.0");
        assert.deepEqual(c.trail.map((p) => [p.lat, p.lng]), [[34, -118], [35, -117]]);
        await h.herd.startServer("Campbell");
        await waitFor(
          async () =>
            ((await get(d, `/api/client?id=${id}`)).body as ClientDetail).holdings.every((x) =>
              x.state === "current"
            ),
          15_000,
          "Campbell to catch up",
        );
        // Campbell's restart stored it again: its step joins the path, from a neighbour.
        const caught = ((await get(d, `/api/client?id=${id}`)).body as ClientDetail).path.find(
          (x) => x.server === "Campbell",
        );
        assert.ok(caught?.from === "Smith" || caught?.from === "Singleton", JSON.stringify(caught));
      });

      await t.step("bad input gets a JSON 400 (or 404), never a crash", async () => {
        const bad: [string, number, RegExp][] = [
          ["/api/clusters?z=-1", 400, /^z must be an integer from 0 to 16$/],
          ["/api/clusters?z=17", 400, /^z must be/],
          ["/api/clusters?z=1.5", 400, /^z must be/],
          ["/api/clusters?z=abc", 400, /^z must be/],
          ["/api/clusters?bbox=1,2,3", 400, /^bbox must be/],
          ["/api/clusters?bbox=5,5,1,1", 400, /^bbox must be/],
          ["/api/clusters?bbox=a,b,c,d", 400, /^bbox must be/],
          ["/api/clusters?bbox=1e308,0,1e309,1", 400, /^bbox must be/],
          ["/api/clusters?bbox=" + "1".repeat(300) + ",0,1,1", 400, /^bbox must be/],
          ["/api/clusters?z=16", 400, /^the view spans \d+ cells at zoom 16/],
          ["/api/clients?limit=0", 400, /^limit must be an integer from 1 to 100$/],
          ["/api/clients?limit=101", 400, /^limit must be/],
          ["/api/clients?limit=ten", 400, /^limit must be/],
          ["/api/clients?prefix=a%20b", 400, /cannot hold the protocol's whitespace/],
          ["/api/clients?prefix=a%09", 400, /whitespace/],
          ["/api/clients?prefix=" + "x".repeat(257), 400, /longer than 256 bytes/],
          ["/api/clients?prefix=" + "é".repeat(129), 400, /longer than 256 bytes/],
          ["/api/client", 400, /^id is required$/],
          ["/api/client?id=", 400, /^id is required$/],
          ["/api/client?id=a%0Ab", 400, /cannot hold the protocol's whitespace/],
          ["/api/client?id=a%0Bb", 400, /cannot hold the protocol's whitespace/],
          ["/api/client?id=nobody.here", 404, /^no client nobody\.here$/],
        ];
        for (const [path, status, error] of bad) {
          const r = await get(d, path);
          assert.deepEqual(r.status, status, path);
          assert.match((r.body as { error: string }).error, error, path);
        }
      });
    } finally {
      d.close();
      await h.close();
    }
  },
});

Deno.test("client search and panel: IDs are the herd's bytes, shown as UTF-8", async () => {
  const h = await startSeedHerd();
  const d = dashboardFor(h);
  try {
    // "café" as UTF-8 bytes on the wire.
    const wire = new TextEncoder().encode(`IAMAT café.example +1+1 ${clientTime()}\n`);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: h.port("Hill") });
    await conn.write(wire);
    const buf = new Uint8Array(512);
    assert.ok((await conn.read(buf)) !== null);
    conn.close();
    await waitFor(
      async () =>
        ((await get(d, `/api/clients?prefix=${encodeURIComponent("caf")}`)).body as SearchResult)
          .total === 1,
      5000,
      "the client in the index",
    );
    const r = (await get(d, `/api/clients?prefix=${encodeURIComponent("café")}`))
      .body as SearchResult;
    assert.deepEqual(r.clients.map((x) => x.client), ["café.example"]);
    const c = await get(d, `/api/client?id=${encodeURIComponent("café.example")}`);
    assert.deepEqual(c.status, 200);
    assert.deepEqual((c.body as ClientDetail).newest.client, "café.example");
  } finally {
    d.close();
    await h.close();
  }
});

Deno.test("client panel: an ID that is not valid UTF-8, or holds NBSP or a control byte, opens from the form the page shows (adversarial review)", async () => {
  // Found by an adversarial review (adv12a): the page names a client by its display form (UTF-8,
  // U+FFFD for bytes that are not), and /api/client looked that form up as UTF-8 bytes: a lone
  // 0xA0 or 0xFF was 404, NBSP (\xc2\xa0) and \x01 a 400, so their panel never opened.
  const h = await startSeedHerd();
  const d = dashboardFor(h);
  try {
    const ids = ["u\xa0x", "u\xffy", "u\xc2\xa0z", "u\x01w", "u\xe2\x80\xa8v"];
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: h.port("Hill") });
    const time = clientTime();
    const lines = ids.map((id) => `IAMAT ${id} +1+1 ${time}\n`).join("");
    await conn.write(Uint8Array.from(lines, (c) => c.charCodeAt(0)));
    const buf = new Uint8Array(4096);
    let got = 0;
    while (got < ids.length) {
      const n = await conn.read(buf);
      assert.ok(n !== null);
      got += buf.subarray(0, n).filter((b) => b === 10).length;
    }
    conn.close();
    await waitFor(
      async () =>
        ((await get(d, "/api/clients?prefix=u")).body as SearchResult).total === ids.length,
      5000,
      "the clients in the index",
    );
    const rows = ((await get(d, "/api/clients?prefix=u")).body as SearchResult).clients;
    const shown = rows.map((r) => r.client);
    assert.deepEqual(shown.length, ids.length, shown.join(" "));
    for (const id of shown) {
      const c = await get(d, `/api/client?id=${encodeURIComponent(id)}`);
      assert.deepEqual(c.status, 200, `${JSON.stringify(id)}: ${JSON.stringify(c.body)}`);
      assert.deepEqual((c.body as ClientDetail).newest.client, id);
      assert.ok((c.body as ClientDetail).holdings.some((x) => x.state === "current"), id);
    }
  } finally {
    d.close();
    await h.close();
  }
});
