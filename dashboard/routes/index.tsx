/**
 * `GET /`: the dashboard page, server-rendered with the herd's current state; the islands in it
 * hydrate and go live from `/api/events`.
 */

import { renderToString } from "preact-render-to-string";
import { Island } from "../components/Island.tsx";
import { Layout } from "../components/Layout.tsx";
import { Panel } from "../components/Panel.tsx";
import Clients from "../islands/Clients.tsx";
import Console from "../islands/Console.tsx";
import EventFeed from "../islands/EventFeed.tsx";
import HerdGraph from "../islands/HerdGraph.tsx";
import LiveBadge from "../islands/LiveBadge.tsx";
import PlacesLog from "../islands/PlacesLog.tsx";
import ServerPanel from "../islands/ServerPanel.tsx";
import WorldMap from "../islands/WorldMap.tsx";
import type { Assets } from "../assets.ts";
import type { RouteModule } from "../context.ts";
import { initialData, jsonForScript } from "../display.ts";
import type { InitialData } from "../types.ts";

/** Every island the page uses (build.ts bundles each file in islands/ that is not `_*`). */
export const ISLANDS = [
  "LiveBadge",
  "WorldMap",
  "Clients",
  "HerdGraph",
  "ServerPanel",
  "EventFeed",
  "PlacesLog",
  "Console",
];

export default function DashboardPage({ init, assets }: { init: InitialData; assets: Assets }) {
  const remote = !init.canControl;
  return (
    <Layout title="Proxy herd" assets={assets} initialJson={jsonForScript(init)} islands={ISLANDS}>
      <header class="topbar">
        <div class="brand">
          <svg viewBox="0 0 32 32" width="26" height="26" aria-hidden="true">
            <circle cx="16" cy="16" r="14" class="brand-bg" />
            <circle cx="10" cy="13" r="3" fill="#fff" />
            <circle cx="22" cy="13" r="3" fill="#fff" />
            <circle cx="16" cy="22" r="3" fill="#fff" />
          </svg>
          <h1>Proxy herd</h1>
          <span class="muted small hide-sm">
            {init.snapshot.servers.length} servers{remote ? " · remote" : ""}
          </span>
        </div>
        <Island name="LiveBadge" component={LiveBadge} init={init} />
      </header>
      {!assets.built && (
        <p class="banner" role="alert">
          The interactive parts are not built: run{" "}
          <code>deno task build</code>. This page shows the state at load time only.
        </p>
      )}
      <main class="grid">
        <Panel title="Clients" hint="newest location of every client" id="map" class="area-map">
          <Island name="WorldMap" component={WorldMap} init={init} />
        </Panel>
        <Panel title="Herd" hint="links and propagation" id="graph" class="area-graph">
          <Island name="HerdGraph" component={HerdGraph} init={init} />
        </Panel>
        <Panel title="Find a client" hint="search, follow" id="clients" class="area-clients">
          <Island name="Clients" component={Clients} init={init} />
        </Panel>
        <Panel title="Events" hint="live" id="events" class="area-feed">
          <Island name="EventFeed" component={EventFeed} init={init} />
        </Panel>
        <Panel title="Servers" id="servers" class="area-servers">
          <Island name="ServerPanel" component={ServerPanel} init={init} />
        </Panel>
        <Panel title="Console" hint="one command over TCP" id="console" class="area-console">
          <Island name="Console" component={Console} init={init} />
        </Panel>
        <Panel title="Places queries" hint="WHATSAT" id="places" class="area-places">
          <Island name="PlacesLog" component={PlacesLog} init={init} />
        </Panel>
      </main>
      <footer class="footer muted small">
        <a href="/metrics">metrics</a> · <a href="/api/state">state</a> ·{" "}
        <span>Natural Earth map data, public domain</span>
      </footer>
    </Layout>
  );
}

export const handler: RouteModule["handler"] = {
  GET(c, d) {
    const init = initialData(d);
    const html = "<!DOCTYPE html>" +
      renderToString(<DashboardPage init={init} assets={d.assets} />);
    return c.html(html, 200, {
      "cache-control": "no-store",
      "content-security-policy":
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
    });
  },
};
