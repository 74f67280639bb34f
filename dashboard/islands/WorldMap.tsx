/**
 * The map of client positions: an offline world (Natural Earth 1:110m from world-atlas, served
 * by `/api/world`, drawn with d3-geo) and one dot per client at its newest reported location.
 * A client that moves glides to its new place and pings; hover shows its record, a click pins it.
 */

import { useEffect, useMemo, useState } from "preact/hooks";
import type { RecordSnapshot } from "../types.ts";
import { GRATICULE_PATH, MAP_H, MAP_W, project, SPHERE_PATH, worldPaths } from "./_geo.ts";
import { useSnapshot } from "./_live.ts";
import { compareTime } from "./_model.ts";

/** Most dots drawn (newest first); beyond this the map says how many are not shown. */
const MAX_DOTS = 3_000;

export default function WorldMap() {
  const snap = useSnapshot();
  const [world, setWorld] = useState<{ land: string; borders: string } | null>(null);
  const [hover, setHover] = useState<string | null>(null);
  const [pinned, setPinned] = useState<string | null>(null);

  useEffect(() => {
    let alive = true;
    fetch("/api/world")
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
      .then((topology) => alive && setWorld(worldPaths(topology)))
      .catch((err) => console.warn("world map unavailable:", err));
    return () => {
      alive = false;
    };
  }, []);

  const dots = useMemo(() => {
    let recs = snap.records;
    if (recs.length > MAX_DOTS) {
      recs = recs.slice().sort((a, b) => compareTime(b.time, a.time)).slice(0, MAX_DOTS);
    }
    const out: { r: RecordSnapshot; x: number; y: number }[] = [];
    for (const r of recs) {
      const p = project(r.lng, r.lat);
      if (p) out.push({ r, x: p[0], y: p[1] });
    }
    // Stable order so moving clients keep their element (and animate).
    out.sort((a, b) => (a.r.client < b.r.client ? -1 : a.r.client > b.r.client ? 1 : 0));
    return out;
  }, [snap.records]);

  const shown = pinned ?? hover;
  const sel = shown ? dots.find((d) => d.r.client === shown) : undefined;

  return (
    <div class="map-wrap">
      <svg
        class="world"
        viewBox={`0 0 ${MAP_W} ${MAP_H}`}
        role="img"
        aria-label={`World map with ${dots.length} clients`}
        onClick={() => setPinned(null)}
      >
        <path class="sphere" d={SPHERE_PATH} />
        <path class="graticule" d={GRATICULE_PATH} />
        {world && <path class="land" d={world.land} data-testid="land" />}
        {world && <path class="borders" d={world.borders} />}
        <g class="clients">
          {dots.map(({ r, x, y }) => (
            <g
              key={r.client}
              class={`client${shown === r.client ? " selected" : ""}`}
              data-client={r.client}
              style={{ transform: `translate(${x}px, ${y}px)` }}
              onMouseEnter={() => setHover(r.client)}
              onMouseLeave={() => setHover((h) => (h === r.client ? null : h))}
              onClick={(ev) => {
                ev.stopPropagation();
                setPinned((p) => (p === r.client ? null : r.client));
              }}
            >
              <circle class="ping" key={`${r.client}@${r.time}`} r="4" />
              <circle class="hit" r="9" />
              <circle class="pin" r="4" />
            </g>
          ))}
        </g>
      </svg>
      {sel && (
        <div
          class="map-tip"
          data-testid="map-tip"
          style={{ left: `${(sel.x / MAP_W) * 100}%`, top: `${(sel.y / MAP_H) * 100}%` }}
        >
          <div class="tip-title">{sel.r.client}</div>
          <code class="tip-at">
            AT {sel.r.origin} {sel.r.diff} {sel.r.client} {sel.r.location} {sel.r.time}
          </code>
          <div class="muted">
            {sel.r.lat.toFixed(4)}, {sel.r.lng.toFixed(4)} · via {sel.r.origin}
            {pinned ? " · pinned" : ""}
          </div>
        </div>
      )}
      <div class="map-legend muted">
        <span data-testid="client-count">{dots.length}</span> client{dots.length === 1 ? "" : "s"}
        {snap.records.length > dots.length ? ` (of ${snap.records.length})` : ""}
        {" · Natural Earth 1:110m, offline"}
      </div>
    </div>
  );
}
