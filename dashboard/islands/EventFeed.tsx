/**
 * The live event feed: newest first, filterable by server and by kind, pausable (a paused feed
 * keeps counting what arrives and shows it on resume). Under load the stream sends each client's
 * newest location and one propagation summary per link a tick; the toolbar says how many events
 * were merged so.
 */

import { useMemo, useState } from "preact/hooks";
import type { DashEvent } from "../types.ts";
import { IS_BROWSER, mergedCount, useFeed, useSnapshot } from "./_live.ts";
import { clock, describe, formatCount, KIND_GROUPS } from "./_model.ts";

const SHOWN = 250;

function kindClass(kind: string): string {
  if (
    kind === "error" || kind === "peer.rejected" || kind === "client.refused" ||
    kind === "link.down" || kind === "server.down"
  ) return "k-bad";
  if (kind === "link.up" || kind === "server.up" || kind === "sync.done") return "k-good";
  if (kind.startsWith("propagation")) return "k-prop";
  if (kind.startsWith("location")) return "k-loc";
  if (kind === "whatsat") return "k-places";
  return "k-plain";
}

export default function EventFeed() {
  const snap = useSnapshot();
  const feed = useFeed();
  const [server, setServer] = useState("");
  const [group, setGroup] = useState("");
  const [paused, setPaused] = useState<DashEvent[] | null>(null);
  const merged = IS_BROWSER ? mergedCount.value : 0;

  const source = paused ?? feed;
  const waiting = paused
    ? feed.filter((e) => e.id > (paused[paused.length - 1]?.id ?? 0)).length
    : 0;

  const rows = useMemo(() => {
    const kinds = group ? new Set(KIND_GROUPS[group]) : null;
    const out: DashEvent[] = [];
    for (let i = source.length - 1; i >= 0 && out.length < SHOWN; i--) {
      const e = source[i];
      if (server && e.server !== server) continue;
      if (kinds && !kinds.has(e.kind)) continue;
      out.push(e);
    }
    return out;
  }, [source, server, group]);

  return (
    <div class="feed">
      <div class="toolbar">
        <label>
          <span class="sr-only">Server</span>
          <select
            value={server}
            onChange={(e) => setServer(e.currentTarget.value)}
            data-testid="feed-server"
          >
            <option value="">All servers</option>
            {snap.servers.map((s) => <option key={s.name} value={s.name}>{s.name}</option>)}
          </select>
        </label>
        <label>
          <span class="sr-only">Kind</span>
          <select
            value={group}
            onChange={(e) => setGroup(e.currentTarget.value)}
            data-testid="feed-kind"
          >
            <option value="">All kinds</option>
            {Object.keys(KIND_GROUPS).map((g) => <option key={g} value={g}>{g}</option>)}
          </select>
        </label>
        <button
          type="button"
          class={paused ? "btn btn-primary" : "btn"}
          data-testid="feed-pause"
          aria-pressed={paused !== null}
          onClick={() => setPaused(paused ? null : feed.slice())}
        >
          {paused ? `Resume${waiting ? ` (${formatCount(waiting)} new)` : ""}` : "Pause"}
        </button>
        {merged > 0 && (
          <span
            class="muted"
            data-testid="feed-merged"
            title="A busy herd: the stream sends each client's newest location and one summary per link a tick"
          >
            {formatCount(merged)} merged
          </span>
        )}
      </div>
      <ol class="feed-list" data-testid="feed-list" aria-live="off">
        {rows.length === 0 && (
          <li class="empty muted">No events{server || group ? " match" : " yet"}.</li>
        )}
        {rows.map((e) => (
          <li
            key={e.id}
            class={`feed-row ${kindClass(e.kind)}`}
            data-kind={e.kind}
            data-server={e.server}
          >
            <span class="mono muted t">{clock(e.t)}</span>
            <span class="srv">{e.server}</span>
            <span class="kind">{e.kind}</span>
            <span class="what">{describe(e)}</span>
          </li>
        ))}
      </ol>
    </div>
  );
}
