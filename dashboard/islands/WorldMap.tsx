/**
 * The map of client positions: an offline world (Natural Earth 1:110m from world-atlas, served
 * by `/api/world`, drawn with d3-geo), zoomed and panned with d3-zoom, and every client of the
 * herd: the server groups them on a grid for the zoom level and view (`/api/clusters`), so a
 * million clients cost the page a few hundred circles. A group shows its count (click or Enter
 * zooms into it); a lone client is a dot (hover shows its record, a click follows it). The
 * followed client is drawn with its recent trail.
 */

import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { Cluster, ClusterResult } from "../types.ts";
import { GRATICULE_PATH, MAP_H, MAP_W, project, SPHERE_PATH, worldPaths } from "./_geo.ts";
import {
  clientTotal,
  detail,
  IS_BROWSER,
  onEvents,
  selectClient,
  selected,
  useClientTotal,
  useInitial,
} from "./_live.ts";
import { formatCount, plural } from "./_model.ts";
import { attachZoom, levelOf, type MapZoom, type View, viewBox } from "./_zoom.ts";

/** Waits after a pan or zoom before asking for the new view's clusters. */
const VIEW_DEBOUNCE_MS = 120;
/** After location events, the clusters are refetched at most this often. */
const LIVE_REFRESH_MS = 400;

/** A group's radius: room for its count's digits. */
function radius(label: string): number {
  return Math.max(11, label.length * 3.4 + 6);
}

/**
 * Where the tip goes: above the dot (below it near the top edge), centred on it, or leaning
 * inwards near the left and right edges, so a tip is never cut off by the map's box.
 */
function tipPlace(x: number, y: number): Record<string, string> {
  const fx = x / MAP_W;
  const lean = fx < 0.3 ? "-8%" : fx > 0.7 ? "-92%" : "-50%";
  const below = y / MAP_H < 0.4;
  return {
    left: `${fx * 100}%`,
    top: `${(y / MAP_H) * 100}%`,
    transform: `translate(${lean}, ${below ? "14px" : "calc(-100% - 14px)"})`,
  };
}

export default function WorldMap() {
  const init = useInitial();
  const total = useClientTotal();
  const [world, setWorld] = useState<{ land: string; borders: string } | null>(null);
  const [view, setView] = useState<View>({ k: 1, x: 0, y: 0 });
  const [data, setData] = useState<ClusterResult>(init.clients);
  const [hover, setHover] = useState<Cluster | null>(null);
  const svgRef = useRef<SVGSVGElement>(null);
  /** Screen pixels per view-box unit: dots, groups and tap targets keep a screen size. */
  const [px, setPx] = useState(1);
  const zoomRef = useRef<MapZoom | null>(null);
  const viewRef = useRef(view);
  viewRef.current = view;
  const follow = IS_BROWSER ? selected.value : null;
  const followed = IS_BROWSER ? detail.value : null;

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

  useEffect(() => {
    const el = svgRef.current;
    if (!el || typeof ResizeObserver === "undefined") return;
    const measure = () => el.clientWidth > 0 && setPx(el.clientWidth / MAP_W);
    measure();
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  // A 24 px tap target (WCAG 2.5.8), a dot of at least 7 px, groups never smaller than on a desktop.
  const hitR = Math.max(12, 12.5 / px);
  const pinR = Math.max(4.5, 3.5 / px);
  const grow = Math.max(1, 1 / px);

  // Clusters for the current view: after a pan or zoom settles, and soon after location events.
  useEffect(() => {
    let alive = true;
    let seq = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = async () => {
      timer = undefined;
      const v = viewRef.current;
      const box = viewBox(v).map((n) => n.toFixed(5)).join(",");
      const mine = ++seq;
      try {
        const res = await fetch(`/api/clusters?z=${levelOf(v.k)}&bbox=${box}`);
        if (!res.ok) return;
        const body: ClusterResult = await res.json();
        if (!alive || mine !== seq) return;
        setData(body);
        clientTotal.value = { total: body.total, exact: body.exact };
        if (body.stale) schedule(LIVE_REFRESH_MS);
      } catch { /* next change */ }
    };
    const schedule = (ms: number) => {
      if (timer === undefined) timer = setTimeout(load, ms);
    };
    const off = onEvents((events) => {
      if (events.some((e) => e.kind === "location.accepted")) schedule(LIVE_REFRESH_MS);
    });
    (globalThis as { __herdMapRefresh?: () => void }).__herdMapRefresh = () => schedule(0);
    const svg = svgRef.current;
    if (svg) {
      zoomRef.current = attachZoom(svg, (v) => {
        setView(v);
        viewRef.current = v;
        if (timer !== undefined) clearTimeout(timer);
        timer = setTimeout(load, VIEW_DEBOUNCE_MS);
      });
    }
    return () => {
      alive = false;
      off();
      zoomRef.current?.destroy();
      if (timer !== undefined) clearTimeout(timer);
    };
  }, []);

  // Following a client: bring it into view (close enough to see it apart from its neighbours).
  const followPos = followed && follow === followed.newest.client
    ? project(followed.newest.lng, followed.newest.lat)
    : null;
  const followKey = followPos ? `${follow}` : "";
  useEffect(() => {
    if (!followPos || !zoomRef.current) return;
    zoomRef.current.centre(followPos[0], followPos[1], Math.max(viewRef.current.k, 2 ** 8));
  }, [followKey]);

  const screen = (x: number, y: number): [number, number] => [
    Math.round((view.x + view.k * x) * 10) / 10,
    Math.round((view.y + view.k * y) * 10) / 10,
  ];
  const inside = ([sx, sy]: [number, number]) =>
    sx > -40 && sx < MAP_W + 40 && sy > -40 && sy < MAP_H + 40;

  const groups = useMemo(() => data.clusters.filter((c) => c.n > 1), [data]);
  const dots = useMemo(
    () =>
      data.clusters.filter((c) => c.n === 1).sort((a, b) =>
        a.client! < b.client! ? -1 : a.client! > b.client! ? 1 : 0
      ),
    [data],
  );

  const trail = followed && follow === followed.newest.client
    ? followed.trail.map((p) => project(p.lng, p.lat)).filter((p) => p !== null)
      .map((p) => screen(p![0], p![1]))
    : [];
  const tipAt = hover ? screen(hover.x, hover.y) : null;
  const zoomBy = (k: number) => zoomRef.current?.scaleBy(k);
  /** Zooms so the group's clients fill most of the view (at least 4× closer). */
  const zoomInto = (c: Cluster) => {
    const [x0, y0, x1, y1] = c.ext ?? [c.x, c.y, c.x, c.y];
    const fit = 0.7 * Math.min(MAP_W / Math.max(x1 - x0, 1e-4), MAP_H / Math.max(y1 - y0, 1e-4));
    zoomRef.current?.centre((x0 + x1) / 2, (y0 + y1) / 2, Math.max(view.k * 4, fit));
  };

  return (
    <div class="map-wrap">
      <svg
        ref={svgRef}
        class="world"
        viewBox={`0 0 ${MAP_W} ${MAP_H}`}
        role="img"
        aria-label={`World map with ${plural(total.total, "client")}`}
        data-zoom={view.k}
      >
        <g class="geo" transform={`translate(${view.x} ${view.y}) scale(${view.k})`}>
          <path class="sphere" d={SPHERE_PATH} />
          <path class="graticule" d={GRATICULE_PATH} />
          {world && <path class="land" d={world.land} data-testid="land" />}
          {world && <path class="borders" d={world.borders} />}
        </g>
        <g class="clusters">
          {groups.map((c) => {
            const at = screen(c.x, c.y);
            if (!inside(at)) return null;
            const label = formatCount(c.n);
            return (
              <g
                key={`${c.x},${c.y}`}
                class="cluster"
                data-count={c.n}
                transform={`translate(${at[0]} ${at[1]}) scale(${grow})`}
                tabIndex={0}
                role="button"
                aria-label={`${label} clients here: zoom in`}
                onClick={(ev) => {
                  ev.stopPropagation();
                  zoomInto(c);
                }}
                onKeyDown={(ev) => {
                  if (ev.key === "Enter" || ev.key === " ") {
                    ev.preventDefault();
                    zoomInto(c);
                  }
                }}
              >
                <circle r={radius(label)} />
                <text text-anchor="middle" dy="0.35em">{label}</text>
              </g>
            );
          })}
        </g>
        {trail.length > 1 && (
          <polyline
            class="trail"
            data-testid="trail"
            points={trail.map((p) => p.join(",")).join(" ")}
          />
        )}
        <g class="clients">
          {dots.map((c) => {
            const at = screen(c.x, c.y);
            if (!inside(at)) return null;
            const id = c.client!;
            return (
              <g
                key={id}
                class={`client${follow === id ? " selected" : ""}`}
                data-client={id}
                style={{ transform: `translate(${at[0]}px, ${at[1]}px)` }}
                onMouseEnter={() => setHover(c)}
                onMouseLeave={() => setHover((h) => (h?.client === id ? null : h))}
                onClick={(ev) => {
                  ev.stopPropagation();
                  selectClient(follow === id ? null : id);
                }}
              >
                <circle class="ping" key={`${id}@${c.rec?.time}`} r="4" />
                <circle class="hit" r={hitR} />
                <circle class="pin" r={pinR} />
              </g>
            );
          })}
        </g>
        {followPos && follow && (
          <g
            class="client followed"
            data-followed={follow}
            transform={`translate(${screen(followPos[0], followPos[1]).join(" ")}) scale(${grow})`}
          >
            <circle class="halo" r="11" />
            <circle class="pin" r="5" />
          </g>
        )}
      </svg>
      <div class="map-tools">
        <button type="button" class="btn btn-icon" aria-label="Zoom in" onClick={() => zoomBy(2)}>
          +
        </button>
        <button
          type="button"
          class="btn btn-icon"
          aria-label="Zoom out"
          onClick={() => zoomBy(0.5)}
        >
          −
        </button>
        <button
          type="button"
          class="btn btn-icon"
          aria-label="Whole world"
          onClick={() => zoomRef.current?.reset()}
        >
          ⌂
        </button>
      </div>
      {hover?.rec && tipAt && (
        <div
          class="map-tip"
          data-testid="map-tip"
          style={tipPlace(tipAt[0], tipAt[1])}
        >
          <div class="tip-title">{hover.client}</div>
          <code class="tip-at">
            AT {hover.rec.origin} {hover.rec.diff} {hover.client} {hover.rec.location}{" "}
            {hover.rec.time}
          </code>
          <div class="muted">via {hover.rec.origin} · click to follow</div>
        </div>
      )}
      <div class="map-legend muted">
        <span data-testid="client-count">{formatCount(total.total)}</span>
        {total.exact ? "" : "+"} client{total.total === 1 ? "" : "s"}
        {data.inView !== total.total ? ` · ${formatCount(data.inView)} in view` : ""}
        {` · zoom ×${formatCount(Math.round(view.k))} · Natural Earth 1:110m, offline`}
      </div>
    </div>
  );
}
