/**
 * Finding and following a client: a search box (ID prefix, answered by `/api/clients`), a
 * keyboard-usable table of the matches (or of the newest clients when the box is empty), and
 * the followed client's panel: its newest record, the record each server holds now (a server
 * that is behind stands out), the path its newest record took through the herd, and how many
 * recent positions the map's trail shows.
 *
 * Keys: ↓ from the box moves into the table; ↑/↓ move between rows; Enter follows a client;
 * Escape stops following.
 */

import { useEffect, useRef, useState } from "preact/hooks";
import type { ClientDetail, ClientRow, SearchResult } from "../types.ts";
import { detail, IS_BROWSER, selectClient, selected, useSnapshot } from "./_live.ts";
import { clock, compareTime, formatCount, plural } from "./_model.ts";

/** Rows the table shows. */
const ROWS = 20;
/** Waits after typing before searching. */
const TYPE_DEBOUNCE_MS = 200;

function Panel({ d }: { d: ClientDetail }) {
  const n = d.newest;
  const t0 = d.path.length > 0 ? d.path[0].t : 0;
  return (
    <div class="client-panel" data-testid="client-panel" data-client-panel={n.client}>
      <div class="client-head">
        <strong class="client-id">{n.client}</strong>
        <button
          type="button"
          class="btn"
          data-testid="client-close"
          onClick={() => selectClient(null)}
        >
          Close
        </button>
      </div>
      <code class="tip-at" data-testid="client-newest">
        AT {n.origin} {n.diff} {n.client} {n.location} {n.time}
      </code>
      <h3 class="sub">Held by each server</h3>
      <table class="table compact" data-testid="client-holdings">
        <thead>
          <tr>
            <th>Server</th>
            <th>Holds</th>
            <th>Client time</th>
            <th>Location</th>
          </tr>
        </thead>
        <tbody>
          {d.holdings.map((h) => (
            <tr key={h.server} data-holding={h.server} data-state={h.state}>
              <td>{h.server}{h.running ? "" : " (stopped)"}</td>
              <td>
                <span
                  class={`chip ${
                    h.state === "current" ? "chip-up" : h.state === "unknown" ? "" : "chip-down"
                  }`}
                >
                  {h.state === "current"
                    ? "newest"
                    : h.state === "behind"
                    ? "behind"
                    : h.state === "missing"
                    ? "none"
                    : "not seen"}
                </span>
              </td>
              <td class="mono">{h.record?.time ?? "–"}</td>
              <td class="mono">{h.record?.location ?? "–"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3 class="sub">Path of the newest update</h3>
      {d.path.length === 0
        ? <p class="muted small">Not seen since this dashboard started.</p>
        : (
          <ol class="path" data-testid="client-path">
            {d.path.map((h, i) => (
              <li key={`${h.server}-${i}`} data-hop={h.server} data-from={h.from ?? ""}>
                <strong>{h.server}</strong> {h.from === null ? "from the client" : `from ${h.from}`}
                {h.catchUp ? " (catch-up)" : ""}
                <span class="muted">
                  {" "}
                  {i === 0 ? clock(h.t) : `+${formatCount(h.t - t0)} ms`}
                </span>
              </li>
            ))}
          </ol>
        )}
      <p class="muted small" data-testid="client-trail">
        Trail: {plural(d.trail.length, "recent position")} on the map.
      </p>
    </div>
  );
}

export default function Clients() {
  const snap = useSnapshot();
  const [query, setQuery] = useState("");
  const [found, setFound] = useState<SearchResult | null>(null);
  const [error, setError] = useState<string | null>(null);
  const tableRef = useRef<HTMLTableSectionElement>(null);
  const follow = IS_BROWSER ? selected.value : null;
  const d = IS_BROWSER ? detail.value : null;

  useEffect(() => {
    if (query === "") {
      setFound(null);
      setError(null);
      return;
    }
    let alive = true;
    const timer = setTimeout(async () => {
      try {
        const res = await fetch(`/api/clients?prefix=${encodeURIComponent(query)}&limit=${ROWS}`);
        const body = await res.json();
        if (!alive) return;
        if (res.ok) {
          setFound(body as SearchResult);
          setError(null);
        } else {
          setFound(null);
          setError((body as { error?: string }).error ?? `HTTP ${res.status}`);
        }
      } catch (err) {
        if (alive) setError(String(err));
      }
    }, TYPE_DEBOUNCE_MS);
    return () => {
      alive = false;
      clearTimeout(timer);
    };
  }, [query]);

  // While a search is on its way, the table shows no stale rows (a keyboard user would act on them).
  const searching = query !== "" && error === null && found?.prefix !== query;
  const rows: ClientRow[] = query === ""
    ? snap.records.slice().sort((a, b) => compareTime(b.time, a.time)).slice(0, ROWS)
    : searching || !found
    ? []
    : found.clients;

  const focusRow = (i: number) => {
    const trs = tableRef.current?.querySelectorAll<HTMLElement>("tr[data-client-row]");
    if (!trs || trs.length === 0) return;
    trs[Math.max(0, Math.min(trs.length - 1, i))].focus();
  };

  const onRowKey = (ev: KeyboardEvent, i: number, id: string) => {
    if (ev.key === "ArrowDown") focusRow(i + 1);
    else if (ev.key === "ArrowUp") {
      if (i === 0) {
        (document.querySelector('[data-testid="client-search"]') as HTMLElement)?.focus();
      } else focusRow(i - 1);
    } else if (ev.key === "Enter" || ev.key === " ") selectClient(id);
    else if (ev.key === "Escape") selectClient(null);
    else return;
    ev.preventDefault();
  };

  return (
    <div class="clients">
      <div class="client-search">
        <input
          type="search"
          class="input"
          data-testid="client-search"
          placeholder="Find a client by ID prefix"
          aria-label="Find a client by ID prefix"
          autocomplete="off"
          spellcheck={false}
          value={query}
          onInput={(ev) => setQuery((ev.target as HTMLInputElement).value)}
          onKeyDown={(ev) => {
            if (ev.key === "ArrowDown") {
              ev.preventDefault();
              focusRow(0);
            } else if (ev.key === "Escape") selectClient(null);
          }}
        />
        <span class="muted small" data-testid="client-matches" aria-live="polite">
          {error
            ? ""
            : searching
            ? "searching…"
            : found
            ? `${plural(found.total, "match", "matches")}${
              found.total > found.clients.length ? `, first ${found.clients.length}` : ""
            }`
            : "newest"}
        </span>
      </div>
      {error && <p class="note note-error" role="alert" data-testid="client-error">{error}</p>}
      <div class="table-scroll client-table">
        <table class="table compact" aria-label="Clients">
          <thead>
            <tr>
              <th>Client</th>
              <th>Origin</th>
              <th>Client time</th>
            </tr>
          </thead>
          <tbody ref={tableRef}>
            {rows.map((r, i) => (
              <tr
                key={r.client}
                data-client-row={r.client}
                tabIndex={0}
                aria-selected={follow === r.client}
                class={follow === r.client ? "row-selected" : ""}
                onClick={() => selectClient(r.client)}
                onKeyDown={(ev) => onRowKey(ev, i, r.client)}
              >
                <td class="mono client-cell">{r.client}</td>
                <td>{r.origin}</td>
                <td class="mono">{r.time}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {rows.length === 0 && !searching && (
          <p class="muted empty">{query ? "No client matches." : "No clients yet."}</p>
        )}
      </div>
      {d && follow === d.newest.client && <Panel d={d} />}
    </div>
  );
}
