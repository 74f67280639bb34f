/**
 * The herd graph: servers on a circle (ordered so links cross as little as possible), links
 * coloured by state (up on both ends, up on one end only, down), a pulse travelling along a link
 * for every propagation batch sent, and per-server clients, connections and updates per second.
 */

import { useEffect, useState } from "preact/hooks";
import { IS_BROWSER, onEvents, rates, useSnapshot } from "./_live.ts";
import { circleOrder, edgeLabel, formatCount, graphLinks, layoutNodes } from "./_model.ts";

/** Widest text inside a node circle (r 39), in view-box units. */
const NODE_TEXT = 66;

/** Squeezes a label into the node circle when it would overflow it (~6.2 units a char at 11 px). */
function fit(text: string): { textLength?: number; lengthAdjust?: string } {
  return text.length * 6.2 > NODE_TEXT
    ? { textLength: NODE_TEXT, lengthAdjust: "spacingAndGlyphs" }
    : {};
}

const W = 560;
const H = 420;
const PULSE_MS = 700;
const MAX_PULSES = 48;

interface Pulse {
  id: number;
  from: string;
  to: string;
  count: number;
}

let pulseSeq = 0;

export default function HerdGraph() {
  const snap = useSnapshot();
  const [pulses, setPulses] = useState<Pulse[]>([]);
  const [arrivals, setArrivals] = useState<Record<string, number>>({});
  const rate = IS_BROWSER ? rates.value : {};

  useEffect(() => {
    return onEvents((events) => {
      const fresh: Pulse[] = [];
      const got: Record<string, number> = {};
      for (const e of events) {
        if (e.kind === "propagation.sent" && fresh.length < MAX_PULSES) {
          fresh.push({ id: ++pulseSeq, from: e.server, to: e.to, count: e.count });
        } else if (e.kind === "propagation.received") {
          got[e.server] = ++pulseSeq;
        }
      }
      if (fresh.length > 0) {
        setPulses((p) => p.concat(fresh).slice(-MAX_PULSES));
        const ids = new Set(fresh.map((f) => f.id));
        setTimeout(() => setPulses((p) => p.filter((x) => !ids.has(x.id))), PULSE_MS + 50);
      }
      if (Object.keys(got).length > 0) setArrivals((a) => ({ ...a, ...got }));
    });
  }, []);

  const links = graphLinks(snap);
  const names = circleOrder(snap.servers.map((s) => s.name), links);
  const pos = layoutNodes(names, W, H, 68);

  return (
    <svg class="graph" viewBox={`0 0 ${W} ${H}`} role="img" aria-label="Herd graph">
      <g class="links">
        {links.map((l) => {
          const a = pos.get(l.a)!;
          const b = pos.get(l.b)!;
          return (
            <line
              key={`${l.a}-${l.b}`}
              class={`link link-${l.state}`}
              data-link={`${l.a}-${l.b}`}
              data-state={l.state}
              x1={a.x}
              y1={a.y}
              x2={b.x}
              y2={b.y}
            >
              <title>{`${l.a} – ${l.b}: ${l.state}`}</title>
            </line>
          );
        })}
      </g>
      <g class="edge-stats">
        {links.map((l) => {
          const text = edgeLabel(l);
          if (!text) return null;
          const a = pos.get(l.a)!;
          const b = pos.get(l.b)!;
          return (
            <text
              key={`${l.a}-${l.b}`}
              class="edge-stat"
              data-edge-stats={`${l.a}-${l.b}`}
              data-rtt={l.rttMs ?? ""}
              data-behind={l.behind.map((v) => v ?? "").join(",")}
              x={(a.x + b.x) / 2}
              y={(a.y + b.y) / 2 - 6}
              text-anchor="middle"
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
              class="pulse"
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
      <g class="nodes">
        {snap.servers.map((s) => {
          const p = pos.get(s.name)!;
          const r = rate[s.name] ?? 0;
          return (
            <g
              key={s.name}
              class={`node ${s.running ? "node-up" : "node-down"}`}
              data-server={s.name}
              transform={`translate(${p.x} ${p.y})`}
            >
              <circle
                key={arrivals[s.name] ?? 0}
                class={arrivals[s.name] ? "node-ring flash" : "node-ring"}
                r="44"
              />
              <circle class="node-core" r="39" />
              <text class="node-name" y="-3" text-anchor="middle">{s.name}</text>
              <text class="node-sub" y="12" text-anchor="middle" {...fit(formatCount(s.records))}>
                {s.running ? formatCount(s.records) : "stopped"}
              </text>
              {s.running && (
                <text class="node-sub" y="25" text-anchor="middle">
                  client{s.records === 1 ? "" : "s"}
                </text>
              )}
              <text class="node-rate" y="57" text-anchor="middle" data-testid={`rate-${s.name}`}>
                {s.running ? `${formatCount(r)} upd/s · ${formatCount(s.connections)} conn` : ""}
              </text>
            </g>
          );
        })}
      </g>
    </svg>
  );
}
