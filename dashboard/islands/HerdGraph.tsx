/**
 * The herd graph: servers on a circle (ordered so links cross as little as possible), links
 * drawn by state (up on both ends, up on one end only, down, cut on purpose: each with its own
 * dash pattern and, when not up, a word on the link, never colour alone), a pulse travelling along
 * a link for every propagation batch sent (catch-up batches in their own colour), and per-server
 * clients, connections and updates per second.
 *
 * Each link has a button at its middle that cuts or restores it (`POST /api/links/{a}/{b}`); on a
 * remote herd the button says why it cannot. The drawing is sized to its box (one user unit is
 * one CSS pixel), so labels keep their size on a phone instead of shrinking with the picture.
 */

import { useEffect, useRef, useState } from "preact/hooks";
import { control, IS_BROWSER, onEvents, rates, refresh, useInitial, useSnapshot } from "./_live.ts";
import {
  besideEdge,
  circleOrder,
  edgeLabel,
  formatCount,
  type GraphLink,
  graphLinks,
  layoutNodes,
  unstackLabels,
} from "./_model.ts";

/** Squeezes a label into a node circle of radius `r` when it would overflow it (~6.2 px a char). */
function fit(text: string, r: number): { textLength?: number; lengthAdjust?: string } {
  const room = r * 1.7;
  return text.length * 6.2 > room ? { textLength: room, lengthAdjust: "spacingAndGlyphs" } : {};
}

/** The server-rendered size; the browser redraws at its box's width. */
const SSR_W = 560;
const MAX_H = 420;
/** How far a link's texts sit off its line: clear of the 28 px button at its middle. */
const EDGE_GAP = 19;
const PULSE_MS = 700;
const MAX_PULSES = 48;
/** How long an edge shows the size of the catch-up that crossed it. */
const CATCHUP_SHOWN_MS = 8_000;
/** An edge label's line (px), and a generous width per character of its 11.5 px bold text. */
const LABEL_LINE = 14;
const LABEL_CHAR_W = 7.2;

interface Pulse {
  id: number;
  from: string;
  to: string;
  count: number;
  catchUp: boolean;
}

let pulseSeq = 0;

const edgeKey = (a: string, b: string) => (a < b ? `${a}-${b}` : `${b}-${a}`);

/** The words on a link that is not simply up. */
function edgeWords(l: GraphLink): string {
  const parts: string[] = [];
  if (l.state === "cut") parts.push(`cut at ${l.cutBy.join(" and ")}`);
  else if (l.state === "down") parts.push("down");
  else if (l.state === "half") parts.push("half up");
  if (l.delayMs > 0) parts.push(`+${l.delayMs} ms`);
  return parts.join(" · ");
}

export default function HerdGraph() {
  const init = useInitial();
  const snap = useSnapshot();
  const [pulses, setPulses] = useState<Pulse[]>([]);
  const [arrivals, setArrivals] = useState<Record<string, number>>({});
  const [catchUps, setCatchUps] = useState<Record<string, { records: number; id: number }>>({});
  const [busy, setBusy] = useState<Record<string, boolean>>({});
  const [message, setMessage] = useState<{ text: string; error: boolean } | null>(null);
  const [width, setWidth] = useState(SSR_W);
  const box = useRef<HTMLDivElement>(null);
  const rate = IS_BROWSER ? rates.value : {};

  useEffect(() => {
    const el = box.current;
    if (!el || typeof ResizeObserver === "undefined") return;
    const measure = () => setWidth(Math.max(280, Math.round(el.clientWidth)));
    measure();
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  useEffect(() => {
    return onEvents((events) => {
      const fresh: Pulse[] = [];
      const got: Record<string, number> = {};
      const synced: Record<string, { records: number; id: number }> = {};
      for (const e of events) {
        if (e.kind === "propagation.sent" && fresh.length < MAX_PULSES) {
          fresh.push({
            id: ++pulseSeq,
            from: e.server,
            to: e.to,
            count: e.count,
            catchUp: e.catchUp === true,
          });
        } else if (e.kind === "propagation.received") {
          got[e.server] = ++pulseSeq;
        } else if (e.kind === "sync.done" && e.sent + e.received > 0) {
          const k = edgeKey(e.server, e.peer);
          const records = Math.max(synced[k]?.records ?? 0, e.sent + e.received);
          synced[k] = { records, id: ++pulseSeq };
        }
      }
      if (fresh.length > 0) {
        setPulses((p) => p.concat(fresh).slice(-MAX_PULSES));
        const ids = new Set(fresh.map((f) => f.id));
        setTimeout(() => setPulses((p) => p.filter((x) => !ids.has(x.id))), PULSE_MS + 50);
      }
      if (Object.keys(got).length > 0) setArrivals((a) => ({ ...a, ...got }));
      if (Object.keys(synced).length > 0) {
        setCatchUps((c) => ({ ...c, ...synced }));
        setTimeout(() =>
          setCatchUps((c) => {
            const out = { ...c };
            for (const [k, v] of Object.entries(synced)) if (out[k]?.id === v.id) delete out[k];
            return out;
          }), CATCHUP_SHOWN_MS);
      }
    });
  }, []);

  async function toggle(l: GraphLink) {
    const name = `${l.a}–${l.b}`;
    if (!init.canControlLinks) {
      setMessage({ text: `${name}: ${UNAVAILABLE}`, error: true });
      return;
    }
    const cut = l.state !== "cut";
    const k = edgeKey(l.a, l.b);
    setBusy((b) => ({ ...b, [k]: true }));
    const url = `/api/links/${encodeURIComponent(l.a)}/${encodeURIComponent(l.b)}`;
    const res = await control(url, { cut });
    setBusy((b) => ({ ...b, [k]: false }));
    setMessage(
      res.ok
        ? {
          text: cut
            ? `${name} cut: updates route around it`
            : `${name} restored: the two ends catch up`,
          error: false,
        }
        : { text: `${name}: ${res.data.error ?? `HTTP ${res.status}`}`, error: true },
    );
    refresh(false);
  }

  const W = width;
  const small = W < 460;
  // Square on a phone: the circle gets room for the labels under each node.
  const H = Math.round(Math.min(MAX_H, W * (small ? 1 : 0.75)));
  const R = small ? 34 : 39;
  const links = graphLinks(snap);
  const names = circleOrder(snap.servers.map((s) => s.name), links);
  const pos = layoutNodes(names, W, H, R + 14);
  // What a link's texts keep clear of: the nodes and every link's button (its own is as far
  // from either side).
  const spots = [...pos.values()];
  for (const l of links) {
    const a = pos.get(l.a)!;
    const b = pos.get(l.b)!;
    spots.push({ x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 });
  }
  // The words and catch-up note of each link that has any, placed apart from one another.
  const labelled = links.flatMap((l) => {
    const words = edgeWords(l);
    const caught = catchUps[edgeKey(l.a, l.b)];
    if (!words && !caught) return [];
    const note = caught
      ? `caught up ${caught.records} record${caught.records === 1 ? "" : "s"}`
      : "";
    return [{ l, words, caught, note }];
  });
  const labelSpots = unstackLabels(
    labelled.map(({ l, words, note }) => ({
      ...besideEdge(pos.get(l.a)!, pos.get(l.b)!, spots, EDGE_GAP, -1),
      width: Math.max(words.length, note.length) * LABEL_CHAR_W,
      lines: words && note ? 2 : 1,
    })),
    LABEL_LINE,
  );

  return (
    <div class="graph-wrap" ref={box}>
      {/* The buttons are placed in % of this box, which is exactly the drawing. */}
      <div class="graph-canvas">
        <svg
          class="graph"
          viewBox={`0 0 ${W} ${H}`}
          width={W}
          height={H}
          role="group"
          aria-label="Herd graph"
        >
          <g class="links">
            {links.map((l) => {
              const a = pos.get(l.a)!;
              const b = pos.get(l.b)!;
              return (
                <line
                  key={`${l.a}-${l.b}`}
                  class={`link link-${l.state}${l.delayMs > 0 ? " link-delayed" : ""}`}
                  data-link={`${l.a}-${l.b}`}
                  data-state={l.state}
                  x1={a.x}
                  y1={a.y}
                  x2={b.x}
                  y2={b.y}
                >
                  <title>{`${l.a} – ${l.b}: ${edgeWords(l) || "up"}`}</title>
                </line>
              );
            })}
          </g>
          <g class="edge-stats">
            {links.map((l) => {
              const text = edgeLabel(l);
              if (!text) return null;
              const at = besideEdge(pos.get(l.a)!, pos.get(l.b)!, spots, EDGE_GAP);
              return (
                <text
                  key={`${l.a}-${l.b}`}
                  class="edge-stat"
                  data-edge-stats={`${l.a}-${l.b}`}
                  data-rtt={l.rttMs ?? ""}
                  data-behind={l.behind.map((v) => v ?? "").join(",")}
                  x={at.x}
                  y={at.y}
                  text-anchor={at.anchor}
                >
                  {text}
                </text>
              );
            })}
          </g>
          <g class="pulses">
            {pulses.map((p) => {
              const a = pos.get(p.from);
              const b = pos.get(p.to);
              if (!a || !b) return null;
              return (
                <circle
                  key={p.id}
                  class={p.catchUp ? "pulse pulse-catchup" : "pulse"}
                  data-from={p.from}
                  data-to={p.to}
                  cx={a.x}
                  cy={a.y}
                  r={p.count > 1 ? 6 : 4.5}
                  style={{ "--dx": `${b.x - a.x}px`, "--dy": `${b.y - a.y}px` }}
                />
              );
            })}
          </g>
          <g class="edge-labels">
            {labelled.map(({ l, words, caught, note }, i) => {
              const { x, y, anchor } = labelSpots[i];
              return (
                <text
                  key={`${l.a}-${l.b}`}
                  class={`edge-label edge-label-${l.state}`}
                  data-edge-label={`${l.a}-${l.b}`}
                  x={x}
                  y={y}
                  text-anchor={anchor}
                >
                  {words}
                  {caught && (
                    <tspan
                      x={x}
                      dy={words ? LABEL_LINE : 0}
                      class="edge-catchup"
                      data-catchup={caught.records}
                    >
                      {note}
                    </tspan>
                  )}
                </text>
              );
            })}
          </g>
          <g class="nodes">
            {snap.servers.map((s) => {
              const p = pos.get(s.name)!;
              const r = rate[s.name] ?? 0;
              const sub = s.running ? formatCount(s.records) : "stopped";
              const clients = `client${s.records === 1 ? "" : "s"}`;
              // "15 clients" where it fits, the number alone in a phone's smaller circles.
              const count = s.running && !small ? `${sub} ${clients}` : sub;
              return (
                <g
                  key={s.name}
                  class={`node ${s.running ? "node-up" : "node-down"}`}
                  data-server={s.name}
                  transform={`translate(${p.x} ${p.y})`}
                  tabIndex={0}
                  role="img"
                  aria-label={`${s.name}: ${sub}${
                    s.running
                      ? ` ${clients}, ${formatCount(r)} updates a second, ${
                        formatCount(s.connections)
                      } connections`
                      : ""
                  }`}
                >
                  <circle
                    key={arrivals[s.name] ?? 0}
                    class={arrivals[s.name] ? "node-ring flash" : "node-ring"}
                    r={R + 5}
                  />
                  <circle class="node-core" r={R} />
                  {
                    /* Three lines in the circle: below it, the rate lay across the links and
                      their buttons. Connections are in the server table. */
                  }
                  <text class="node-name" y="-8" text-anchor="middle">{s.name}</text>
                  <text class="node-sub" y="7" text-anchor="middle" {...fit(count, R)}>
                    {count}
                  </text>
                  {s.running && (
                    <text
                      class="node-rate"
                      y="21"
                      text-anchor="middle"
                      data-testid={`rate-${s.name}`}
                      {...fit(`${formatCount(r)} upd/s`, R)}
                    >
                      {`${formatCount(r)} upd/s`}
                    </text>
                  )}
                </g>
              );
            })}
          </g>
        </svg>
        {links.map((l) => {
          const a = pos.get(l.a)!;
          const b = pos.get(l.b)!;
          const cut = l.state === "cut";
          const name = `${l.a}–${l.b}`;
          return (
            <button
              key={`${l.a}-${l.b}`}
              type="button"
              class={`edge-btn${cut ? " edge-btn-cut" : ""}`}
              data-link-control={`${l.a}-${l.b}`}
              aria-pressed={cut}
              aria-disabled={!init.canControlLinks || busy[edgeKey(l.a, l.b)] ? "true" : undefined}
              aria-label={cut ? `Restore link ${name}` : `Cut link ${name}`}
              title={init.canControlLinks
                ? (cut ? `Restore link ${name}` : `Cut link ${name}`)
                : `${name}: ${UNAVAILABLE}`}
              style={{
                left: `${((a.x + b.x) / 2 / W) * 100}%`,
                top: `${((a.y + b.y) / 2 / H) * 100}%`,
              }}
              onClick={() => !busy[edgeKey(l.a, l.b)] && toggle(l)}
            >
              <span aria-hidden="true">{cut ? "⟲" : "✂"}</span>
            </button>
          );
        })}
      </div>
      {!init.canControlLinks && (
        <p class="note muted small" data-testid="links-unavailable">
          Link controls: {UNAVAILABLE}.
        </p>
      )}
      {message && (
        <p
          class={message.error ? "note note-error" : "note"}
          role="status"
          data-testid="link-message"
        >
          {message.text}
        </p>
      )}
    </div>
  );
}

/** Why links cannot be cut from a remote dashboard. */
const UNAVAILABLE =
  "unavailable on a remote herd (its servers take no control from a dashboard; cut links where they run)";
