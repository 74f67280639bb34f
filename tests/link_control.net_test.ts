/**
 * Cutting and delaying links at run time (servers/link_control.ts), over real TCP and real
 * HTTP: `POST /api/links/{a}/{b}` on an in-process herd with its log files. After a cut no record
 * crosses the link (by both servers' logs) while the rest of the herd still gets it; after a
 * restore both sides converge (a catch-up over the link); a delay slows that link only.
 */

import assert from "node:assert/strict";
import { exchange, startSeedHerd, type TestHerd, waitFor } from "./_helpers/net.ts";
import { serveDashboard, type ServedDashboard } from "../dashboard/app.ts";
import { openLogs } from "../servers/log.ts";
import type { HerdEvent } from "../servers/events.ts";

const SERVERS = ["Hill", "Jaquez", "Smith", "Campbell", "Singleton"];

function nowTime(offsetMs = 0): string {
  const ms = Date.now() + offsetMs;
  return `${Math.floor(ms / 1000)}.${String(ms % 1000).padStart(3, "0")}000000`;
}

interface Rig {
  herd: TestHerd;
  dash: ServedDashboard;
  logDir: string;
  logs: { flush(): Promise<void>; close(): Promise<void> };
  events: HerdEvent[];
  /** POSTs a link change as the dashboard page would (same Origin). */
  post(a: string, b: string, body: unknown, origin?: string): Promise<Response>;
  /** One server's log text so far. */
  log(server: string): Promise<string>;
}

async function withRig(fn: (r: Rig) => Promise<void>): Promise<void> {
  const herd = await startSeedHerd();
  const logDir = await Deno.makeTempDir({ prefix: "herd-linkctl-" });
  const logs = await openLogs(herd.herd.bus, logDir, SERVERS);
  const events: HerdEvent[] = [];
  const off = herd.herd.bus.subscribe((e) => events.push(e));
  const dash = await serveDashboard(herd.herd, { host: "127.0.0.1", port: 0, quiet: true });
  const r: Rig = {
    herd,
    dash,
    logDir,
    logs,
    events,
    post: (a, b, body, origin = dash.url) =>
      fetch(`${dash.url}/api/links/${a}/${b}`, {
        method: "POST",
        headers: { origin, "content-type": "application/json" },
        body: typeof body === "string" ? body : JSON.stringify(body),
      }),
    async log(server) {
      await logs.flush();
      return await Deno.readTextFile(`${logDir}/${server}.log`);
    },
  };
  try {
    await fn(r);
  } finally {
    off();
    await dash.close();
    await herd.close();
    await logs.close();
    await Deno.remove(logDir, { recursive: true });
  }
}

/** The link's up state at both ends. */
function linkUp(h: TestHerd, a: string, b: string): [boolean, boolean] {
  const s = h.herd.snapshot().servers;
  const at = (x: string, y: string) =>
    s.find((v) => v.name === x)!.links.find((l) => l.peer === y)?.up ?? false;
  return [at(a, b), at(b, a)];
}

/** True when server `s` holds `client` at time `time`. */
function holds(h: TestHerd, s: string, client: string, time: string): boolean {
  return h.herd.servers.get(s)!.store.get(client)?.time === time;
}

async function cut(r: Rig, a: string, b: string, value: boolean): Promise<void> {
  const res = await r.post(a, b, { cut: value });
  const body = await res.json();
  assert.deepEqual(res.status, 200, JSON.stringify(body));
  assert.deepEqual(body.ends[a].cut, value);
  assert.deepEqual(body.ends[b].cut, value);
  const want = !value;
  await waitFor(
    () => linkUp(r.herd, a, b).every((u) => u === want),
    10_000,
    `${a}–${b} ${value ? "down" : "up"} at both ends`,
  );
}

Deno.test({
  name: "link API over HTTP: Origin rule, 400 for bad bodies, 404 for a non-link",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withRig(async (r) => {
      const noOrigin = await fetch(`${r.dash.url}/api/links/Hill/Jaquez`, {
        method: "POST",
        body: '{"cut":true}',
      });
      assert.deepEqual(noOrigin.status, 403);
      await noOrigin.body?.cancel();
      const foreign = await r.post("Hill", "Jaquez", { cut: true }, "http://evil.example");
      assert.deepEqual(foreign.status, 403);
      await foreign.body?.cancel();
      assert.deepEqual(linkUp(r.herd, "Hill", "Jaquez"), [true, true]);
      for (const bad of ["not json", "[1]", '{"cut":1}', '{"delayMs":-5}', "{}"]) {
        const res = await r.post("Hill", "Jaquez", bad);
        assert.deepEqual(res.status, 400, bad);
        assert.ok(typeof (await res.json()).error === "string");
      }
      for (const [a, b] of [["Hill", "Campbell"], ["Hill", "Nowhere"], ["Hill", "Hill"]]) {
        const res = await r.post(a, b, { cut: true });
        assert.deepEqual(res.status, 404, `${a}-${b}`);
        assert.match((await res.json()).error, /not a link/);
      }
      assert.deepEqual(linkUp(r.herd, "Hill", "Jaquez"), [true, true]);
    });
  },
});

Deno.test({
  name: "cut: no record crosses the link (by the logs), the herd routes around, restore converges",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withRig(async (r) => {
      const h = r.herd;
      // Either end's cut stops the link: cut at Jaquez's end only (the Link itself) ...
      h.herd.servers.get("Jaquez")!.links.find((l) => l.peer === "Hill")!.control({ cut: true });
      await waitFor(() => linkUp(h, "Hill", "Jaquez").every((u) => !u), 10_000, "one-end cut");
      // ... and Hill, which keeps dialling, stays out for a few of its redials.
      await new Promise((res) => setTimeout(res, 1500));
      assert.deepEqual(linkUp(h, "Hill", "Jaquez"), [false, false]);
      h.herd.servers.get("Jaquez")!.links.find((l) => l.peer === "Hill")!.control({ cut: false });
      await waitFor(() => linkUp(h, "Hill", "Jaquez").every((u) => u), 10_000, "relinked");

      // Now over HTTP, both ends.
      await cut(r, "Hill", "Jaquez", true);
      const cutAt = r.events.length;
      const t1 = nowTime();
      assert.match(await exchange(h.port("Hill"), `IAMAT around.hill +10+10 ${t1}\n`), /^AT Hill /);
      const t2 = nowTime();
      assert.match(
        await exchange(h.port("Jaquez"), `IAMAT around.jaquez +20+20 ${t2}\n`),
        /^AT Jaquez /,
      );
      await waitFor(
        () =>
          SERVERS.every((s) => holds(h, s, "around.hill", t1) && holds(h, s, "around.jaquez", t2)),
        10_000,
        "both records everywhere, around the cut",
      );
      const hill = await r.log("Hill");
      const jaquez = await r.log("Jaquez");
      assert.match(hill, new RegExp(RegExp.escape("LINK CUT Jaquez")));
      assert.match(jaquez, new RegExp(RegExp.escape("LINK CUT Hill")));
      const afterCut = (text: string) => text.slice(text.lastIndexOf("LINK CUT"));
      // Nothing was sent or received on the cut link after the cut ...
      for (const [log, peer] of [[hill, "Jaquez"], [jaquez, "Hill"]]) {
        const tail = afterCut(log);
        assert.ok(!tail.includes(`SEND to ${peer}`), `${peer}: sent over the cut:\n${tail}`);
        assert.ok(!tail.includes(`RECV from ${peer}`), `${peer}: received over the cut:\n${tail}`);
        assert.ok(!tail.includes(`LINK UP ${peer}`), `${peer}: relinked while cut:\n${tail}`);
      }
      // ... and each got the other's record the long way round.
      assert.match(afterCut(jaquez), /ACCEPT from Singleton AT Hill \S+ around\.hill /);
      assert.match(afterCut(hill), /ACCEPT from Smith AT Jaquez \S+ around\.jaquez /);
      assert.ok(
        !r.events.slice(cutAt).some((e) =>
          (e.kind === "propagation.sent" &&
            ((e.server === "Hill" && e.to === "Jaquez") ||
              (e.server === "Jaquez" && e.to === "Hill"))) ||
          (e.kind === "link.up" && ["Hill", "Jaquez"].includes(e.server) &&
            ["Hill", "Jaquez"].includes(e.peer))
        ),
        "an event crossed the cut",
      );
      // The snapshot (and so the dashboard) shows the cut at both ends.
      const state = await (await fetch(`${r.dash.url}/api/state?records=0`)).json();
      const hillState = state.servers.find((s: { name: string }) => s.name === "Hill");
      // The link's statistics ride along (state, round trip, ...); the run-time settings are these.
      const { peer, up, cut: isCut, state: linkState } = hillState.links.find((
        l: { peer: string },
      ) => l.peer === "Jaquez");
      assert.deepEqual({ peer, up, cut: isCut, state: linkState }, {
        peer: "Jaquez",
        up: false,
        cut: true,
        state: "down",
      });
    });
  },
});

Deno.test({
  name: "restore: a record that could not go around catches up over the restored link",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withRig(async (r) => {
      const h = r.herd;
      // Jaquez alone: both its links cut.
      await cut(r, "Hill", "Jaquez", true);
      await cut(r, "Jaquez", "Singleton", true);
      const t1 = nowTime();
      await exchange(h.port("Hill"), `IAMAT island.out +1+1 ${t1}\n`);
      const t2 = nowTime();
      await exchange(h.port("Jaquez"), `IAMAT island.in +2+2 ${t2}\n`);
      await waitFor(
        () =>
          ["Hill", "Smith", "Campbell", "Singleton"].every((s) => holds(h, s, "island.out", t1)),
        10_000,
        "the rest of the herd has Hill's record",
      );
      await new Promise((res) => setTimeout(res, 300));
      assert.ok(!holds(h, "Jaquez", "island.out", t1), "Hill's record reached the island");
      assert.ok(
        !["Hill", "Smith", "Campbell", "Singleton"].some((s) => holds(h, s, "island.in", t2)),
        "Jaquez's record left the island",
      );
      const syncs = r.events.length;
      await cut(r, "Hill", "Jaquez", false);
      await waitFor(
        () => SERVERS.every((s) => holds(h, s, "island.out", t1) && holds(h, s, "island.in", t2)),
        10_000,
        "both sides converge",
      );
      const done = r.events.slice(syncs).filter((e) =>
        e.kind === "sync.done" && e.server === "Jaquez" && e.peer === "Hill"
      );
      assert.ok(done.length > 0, "no catch-up over the restored link");
      assert.match(await r.log("Jaquez"), new RegExp(RegExp.escape("LINK OPEN Hill delay 0 ms")));
      await cut(r, "Jaquez", "Singleton", false);
    });
  },
});

Deno.test({
  name: "delay: lines on a delayed link wait, other links do not",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withRig(async (r) => {
      const h = r.herd;
      const DELAY = 1200;
      // Jaquez is reachable through Hill only, so its copy must cross the delayed link.
      await cut(r, "Jaquez", "Singleton", true);
      const res = await r.post("Hill", "Jaquez", { delayMs: DELAY });
      assert.deepEqual(res.status, 200);
      assert.deepEqual((await res.json()).ends.Hill, { cut: false, delayMs: DELAY });
      const from = r.events.length;
      const t = nowTime();
      await exchange(h.port("Hill"), `IAMAT slow.lane +3+3 ${t}\n`);
      await waitFor(() => holds(h, "Jaquez", "slow.lane", t), 10_000, "Jaquez gets it");
      const accepted = (s: string) =>
        r.events.slice(from).find((e) =>
          e.kind === "location.accepted" && e.server === s && e.record.client === "slow.lane"
        )!.t;
      const hill = accepted("Hill");
      assert.ok(
        accepted("Jaquez") - hill >= DELAY - 5,
        `Jaquez after ${accepted("Jaquez") - hill} ms`,
      );
      // The other links were not slowed: Smith had it before the delayed copy reached Jaquez.
      assert.ok(accepted("Smith") < accepted("Jaquez"), "Smith was delayed too");
      // The link stayed up throughout (a delay is not a cut), and the delay is undone.
      assert.deepEqual(linkUp(h, "Hill", "Jaquez"), [true, true]);
      const undo = await r.post("Hill", "Jaquez", { delayMs: 0 });
      assert.deepEqual((await undo.json()).ends.Jaquez, { cut: false, delayMs: 0 });
      await cut(r, "Jaquez", "Singleton", false);
    });
  },
});
