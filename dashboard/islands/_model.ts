/**
 * Pure state logic shared by the islands (and unit-tested in Deno): applying streamed events to
 * a snapshot, ordering client times, laying out the herd graph, describing events in words.
 *
 * @module
 */

import type { DashEvent, HerdSnapshot, RecordSnapshot, ServerSnapshot } from "../types.ts";
import { compareRecords, compareTimes } from "../../servers/record.ts";
import { hostPort } from "../../servers/http_host.ts";

/** Client times compared exactly, as the herd compares them. */
export const compareTime = compareTimes;

/** Most records the browser keeps (the newest, for the client table; the map asks the server). */
export const MAX_RECORDS = 500;

/**
 * Merges a record into a by-client map when it wins by the herd's rule (newer time, then the tie
 * rule), so the map shows what the herd converges to. Returns true when it changed.
 */
export function mergeRecord(byClient: Map<string, RecordSnapshot>, r: RecordSnapshot): boolean {
  const old = byClient.get(r.client);
  if (old && compareRecords(r, old) <= 0) return false;
  byClient.set(r.client, r);
  return true;
}

function withServer(
  snap: HerdSnapshot,
  name: string,
  fn: (s: ServerSnapshot) => ServerSnapshot,
): HerdSnapshot {
  const i = snap.servers.findIndex((s) => s.name === name);
  if (i < 0) return snap;
  const servers = snap.servers.slice();
  servers[i] = fn(servers[i]);
  return { ...snap, servers };
}

type LinkSnapshot = ServerSnapshot["links"][number];

function setLink(s: ServerSnapshot, peer: string, change: Partial<LinkSnapshot>): ServerSnapshot {
  const links = s.links.some((l) => l.peer === peer)
    ? s.links.map((l) => (l.peer === peer ? { ...l, ...change } : l))
    : [...s.links, { peer, up: false, ...change }];
  return { ...s, links };
}

/**
 * Applies streamed events to a snapshot (returns a new one; the input is not changed). Records
 * are merged newest-wins by client; counts that events cannot tell exactly (records per server)
 * are left to the next `/api/state` refresh.
 */
export function applyEvents(snap: HerdSnapshot, events: readonly DashEvent[]): HerdSnapshot {
  let out = snap;
  let byClient: Map<string, RecordSnapshot> | undefined;
  for (const e of events) {
    switch (e.kind) {
      case "server.up":
        out = withServer(
          out,
          e.server,
          (s) => ({ ...s, running: true, host: e.host, port: e.port }),
        );
        break;
      case "server.down":
        out = withServer(out, e.server, (s) => ({
          ...s,
          running: false,
          connections: 0,
          links: s.links.map((l) => ({ ...l, up: false })),
        }));
        break;
      case "client.connect":
        out = withServer(out, e.server, (s) => ({ ...s, connections: s.connections + 1 }));
        break;
      case "client.disconnect":
        out = withServer(out, e.server, (s) => ({
          ...s,
          connections: Math.max(0, s.connections - 1),
        }));
        break;
      case "link.up":
        out = withServer(out, e.server, (s) => setLink(s, e.peer, { up: true }));
        break;
      case "link.down":
        out = withServer(out, e.server, (s) => setLink(s, e.peer, { up: false }));
        break;
      case "link.control":
        out = withServer(
          out,
          e.server,
          (s) => setLink(s, e.peer, { cut: e.cut, delayMs: e.delayMs }),
        );
        break;
      case "location.accepted": {
        byClient ??= new Map(out.records.map((r) => [r.client, r]));
        mergeRecord(byClient, { ...e.record, lat: e.lat, lng: e.lng });
        break;
      }
    }
  }
  if (byClient) {
    let records = [...byClient.values()];
    if (records.length > MAX_RECORDS) {
      records = records.sort((a, b) => compareTime(b.time, a.time)).slice(0, MAX_RECORDS);
    }
    out = { ...out, records };
  }
  return out;
}

/**
 * State of an undirected link as both ends report it ("half": only one end says up; "cut": an
 * end has it cut on purpose).
 */
export type LinkState = "up" | "half" | "down" | "cut";

/** One undirected link of the herd graph. */
export interface GraphLink {
  a: string;
  b: string;
  state: LinkState;
  /** The link's round trip in ms as either end last measured it (the larger); null when unknown. */
  rttMs: number | null;
  /** Records `a` has yet to send to `b`, and `b` to `a` (null when that end does not say). */
  behind: [number | null, number | null];
  /** The ends that have it cut. */
  cutBy: string[];
  /** The largest delay either end adds (ms). */
  delayMs: number;
}

/** A link as a snapshot may carry it: up, plus statistics when the herd keeps them. */
interface LinkInfo {
  peer: string;
  up: boolean;
  rttMs?: number | null;
  behind?: number;
  cut?: boolean;
  delayMs?: number;
}

function linkInfo(s: ServerSnapshot, peer: string): LinkInfo | undefined {
  return (s.links as LinkInfo[]).find((l) => l.peer === peer);
}

/** The undirected links of a snapshot (a link listed on either side is a link). */
export function graphLinks(snap: HerdSnapshot): GraphLink[] {
  const byName = new Map(snap.servers.map((s) => [s.name, s]));
  const seen = new Set<string>();
  const out: GraphLink[] = [];
  for (const s of snap.servers) {
    const peers = new Set([...s.neighbors, ...s.links.map((l) => l.peer)]);
    for (const p of peers) {
      const [a, b] = s.name < p ? [s.name, p] : [p, s.name];
      const key = `${a}\0${b}`;
      if (seen.has(key) || !byName.has(p)) continue;
      seen.add(key);
      const sa = byName.get(a)!;
      const sb = byName.get(b)!;
      const upA = sa.links.some((l) => l.peer === b && l.up);
      const upB = sb.links.some((l) => l.peer === a && l.up);
      const la = linkInfo(sa, b);
      const lb = linkInfo(sb, a);
      const cutBy = [la?.cut ? a : "", lb?.cut ? b : ""].filter((x) => x !== "");
      const delayMs = Math.max(la?.delayMs ?? 0, lb?.delayMs ?? 0);
      const state: LinkState = cutBy.length > 0
        ? "cut"
        : !sa.running || !sb.running
        ? "down"
        : upA && upB
        ? "up"
        : upA || upB
        ? "half"
        : "down";
      const rtts = [la?.rttMs, lb?.rttMs].filter((v): v is number => typeof v === "number");
      out.push({
        a,
        b,
        state,
        rttMs: rtts.length > 0 ? Math.max(...rtts) : null,
        behind: [
          typeof la?.behind === "number" ? la.behind : null,
          typeof lb?.behind === "number" ? lb.behind : null,
        ],
        cutBy,
        delayMs,
      });
    }
  }
  return out;
}

/**
 * Orders servers around a circle so that as few links as possible cross (exhaustive for up to
 * 8 servers, the given order beyond). The first name stays first; ties keep the given order.
 */
export function circleOrder(names: readonly string[], links: readonly GraphLink[]): string[] {
  if (names.length <= 3 || names.length > 8) return [...names];
  const edges = links.map((l) => [names.indexOf(l.a), names.indexOf(l.b)]).filter(([a, b]) =>
    a >= 0 && b >= 0
  );
  const crossings = (order: number[]): number => {
    const pos = new Array<number>(names.length);
    order.forEach((n, i) => (pos[n] = i));
    let count = 0;
    for (let i = 0; i < edges.length; i++) {
      const [a, b] = [pos[edges[i][0]], pos[edges[i][1]]].sort((x, y) => x - y);
      for (let j = i + 1; j < edges.length; j++) {
        const c = pos[edges[j][0]];
        const d = pos[edges[j][1]];
        if (c === a || c === b || d === a || d === b) continue;
        if ((c > a && c < b) !== (d > a && d < b)) count++;
      }
    }
    return count;
  };
  let best = names.map((_, i) => i);
  let bestScore = crossings(best);
  const rest = best.slice(1);
  const permute = (prefix: number[], left: number[]): void => {
    if (bestScore === 0) return;
    if (left.length === 0) {
      const order = [0, ...prefix];
      const score = crossings(order);
      if (score < bestScore) {
        best = order;
        bestScore = score;
      }
      return;
    }
    for (let i = 0; i < left.length; i++) {
      permute([...prefix, left[i]], [...left.slice(0, i), ...left.slice(i + 1)]);
    }
  };
  permute([], rest);
  return best.map((i) => names[i]);
}

/** Node positions for the herd graph: the servers on a circle, first one at the top. */
export function layoutNodes(
  names: readonly string[],
  width: number,
  height: number,
  margin = 60,
): Map<string, { x: number; y: number }> {
  const cx = width / 2;
  const cy = height / 2;
  const r = Math.max(10, Math.min(width, height) / 2 - margin);
  const out = new Map<string, { x: number; y: number }>();
  names.forEach((name, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, names.length);
    out.set(name, {
      x: Math.round((cx + r * Math.cos(a)) * 10) / 10,
      y: Math.round((cy + r * Math.sin(a)) * 10) / 10,
    });
  });
  return out;
}

const counts = new Intl.NumberFormat("en-US");

/**
 * A count for people, with thousands separators. One fixed locale, so the server's HTML and the
 * browser's render agree.
 *
 * @example
 * ```ts
 * formatCount(1000000); // "1,000,000"
 * ```
 */
export function formatCount(n: number): string {
  return counts.format(n);
}

/**
 * An edge's label: its round trip, and the records each end has yet to send when any.
 *
 * @example
 * ```ts
 * edgeLabel({ a: "A", b: "B", state: "up", rttMs: 0.4, behind: [0, 1200], cutBy: [], delayMs: 0 });
 * // "0.40 ms · B→A 1,200 behind"
 * ```
 */
export function edgeLabel(l: GraphLink): string {
  const parts: string[] = [];
  // A down link's last figures are history, not the link's state.
  if (l.state === "down") return "";
  if (l.rttMs !== null) parts.push(`${millis(l.rttMs)} ms`);
  const [ab, ba] = l.behind;
  if (ab) parts.push(`${l.a}→${l.b} ${formatCount(ab)} behind`);
  if (ba) parts.push(`${l.b}→${l.a} ${formatCount(ba)} behind`);
  return parts.join(" · ");
}

/**
 * Where a link's text goes: beside its middle, `gap` px off the line on its roomier side (the
 * one whose spot lies farther from everything in `nodes`, e.g. the nodes and the links' buttons;
 * `side` -1 for the other side),
 * anchored so it reads away from the line. Straight above the middle, the label of a steep link
 * ran into the node above it. `y` is a baseline for text about 12 px high.
 *
 * @example
 * ```ts
 * const nodes = [{ x: 0, y: 0 }, { x: 0, y: 100 }, { x: 80, y: 50 }];
 * besideEdge(nodes[0], nodes[1], nodes, 20); // { x: -20, y: 54, anchor: "end" }
 * ```
 */
export function besideEdge(
  a: { x: number; y: number },
  b: { x: number; y: number },
  nodes: Iterable<{ x: number; y: number }>,
  gap: number,
  side: 1 | -1 = 1,
): { x: number; y: number; anchor: "start" | "middle" | "end" } {
  const mx = (a.x + b.x) / 2;
  const my = (a.y + b.y) / 2;
  const len = Math.hypot(b.x - a.x, b.y - a.y) || 1;
  let nx = -(b.y - a.y) / len;
  let ny = (b.x - a.x) / len;
  const room = (sx: number, sy: number) => {
    let least = Infinity;
    for (const n of nodes) least = Math.min(least, Math.hypot(n.x - sx, n.y - sy));
    return least;
  };
  const here = room(mx + nx * gap * 2, my + ny * gap * 2);
  const there = room(mx - nx * gap * 2, my - ny * gap * 2);
  // The roomier side; on a tie, the upper one.
  if (there > here + 0.5 || (Math.abs(there - here) <= 0.5 && ny > 0)) [nx, ny] = [-nx, -ny];
  nx *= side;
  ny *= side;
  const anchor = nx > 0.5 ? "start" : nx < -0.5 ? "end" : "middle";
  // Text hangs from its baseline: below the line it needs its height more, beside it half.
  const lift = ny > 0.5 ? 10 : ny < -0.5 ? -2 : 4;
  return {
    x: Math.round((mx + nx * gap) * 10) / 10,
    y: Math.round((my + ny * gap + lift) * 10) / 10,
    anchor,
  };
}

/** A label to place: where {@linkcode besideEdge} put it, its width and its lines. */
export interface LabelSpot {
  x: number;
  y: number;
  anchor: "start" | "middle" | "end";
  width: number;
  lines: number;
}

/**
 * Moves labels down, in order, until none overlaps one placed before it. Two links that meet at
 * a node at a narrow angle put their labels on the sides that face each other, on one spot (two
 * "caught up" notes after a restart, each over the other). `lineHeight`: a line of the text; `y`
 * is each label's first baseline.
 *
 * @example
 * ```ts
 * const a = { x: 100, y: 50, anchor: "start" as const, width: 120, lines: 1 };
 * unstackLabels([a, { ...a, x: 110 }]); // the second moves to y 66
 * ```
 */
export function unstackLabels(labels: readonly LabelSpot[], lineHeight = 14): LabelSpot[] {
  const placed: number[][] = [];
  return labels.map((l) => {
    const left = l.anchor === "start"
      ? l.x
      : l.anchor === "end"
      ? l.x - l.width
      : l.x - l.width / 2;
    const box = (y: number) => [
      left,
      y - lineHeight + 3,
      left + l.width,
      y + 3 + (l.lines - 1) * lineHeight,
    ];
    let y = l.y;
    // Each move clears one placed box for good (it only goes down): at most one per box.
    for (let moves = 0; moves <= placed.length; moves++) {
      const b = box(y);
      const hit = placed.find((p) => p[0] < b[2] && b[0] < p[2] && p[1] < b[3] && b[1] < p[3]);
      if (hit === undefined) break;
      y = hit[3] + lineHeight - 1;
    }
    placed.push(box(y));
    return { ...l, y };
  });
}

/** "1 client", "1,000,000 clients" ("2 matches" with `many`). */
export function plural(n: number, word: string, many = `${word}s`): string {
  return `${formatCount(n)} ${n === 1 ? word : many}`;
}

/** Event groups for the feed filter. */
export const KIND_GROUPS: Record<string, readonly string[]> = {
  locations: ["location.accepted", "location.dropped"],
  propagation: ["propagation.sent", "propagation.received", "sync.done"],
  links: ["link.up", "link.down", "link.control", "peer.rejected"],
  clients: ["client.connect", "client.disconnect", "client.refused"],
  servers: ["server.up", "server.down"],
  whatsat: ["whatsat"],
  errors: ["error", "peer.rejected", "client.refused", "invalid"],
};

/**
 * A latency for people: two decimals under 10 ms, whole milliseconds above.
 *
 * @example
 * ```ts
 * millis(0.18565099999977974); // "0.19"
 * ```
 */
export function millis(ms: number): string {
  return ms < 10 ? ms.toFixed(2) : ms.toFixed(0);
}

/** One line of text for an event (the feed shows it beside time, server and kind). */
export function describe(e: DashEvent): string {
  switch (e.kind) {
    case "server.up":
      return `listening on ${hostPort(e.host, e.port)}`;
    case "server.down":
      return "stopped";
    case "client.connect":
      return `#${e.conn} from ${e.remote}`;
    case "client.disconnect":
      return `#${e.conn} ${e.remote} (${e.reason})`;
    case "client.refused":
      return `${e.remote}: ${e.reason}`;
    case "location.accepted":
      return `${e.record.client} at ${e.record.location} ${
        e.from ? `from ${e.from}` : "from client"
      } (origin ${e.record.origin})`;
    case "location.batch": // a remote herd's catch-up read (not streamed: see STREAM_KINDS)
      return `${plural(e.count, "record")} caught up from ${e.from}`;
    case "location.dropped":
      return `${e.record.client} ${e.reason}${e.from ? ` from ${e.from}` : ""}`;
    case "propagation.sent":
      return `→ ${e.to}: ${plural(e.count, "record")}${batches(e.batches)}${
        listed(e.clients, e.count)
      }`;
    case "propagation.received":
      return `← ${e.from}: ${plural(e.count, "record")}${batches(e.batches)}${
        listed(e.clients, e.count)
      }`;
    case "link.up":
      return `link to ${e.peer} up (${e.direction === "out" ? "dialled" : "accepted"})`;
    case "link.down":
      return `link to ${e.peer} down: ${e.reason}`;
    case "link.stats":
      return `link to ${e.peer} ${e.state}, rtt ${
        e.rttMs === null ? "-" : `${millis(e.rttMs)} ms`
      }, ${e.behind} behind, ${e.unacked} unacknowledged`;
    case "link.control":
      return `link to ${e.peer} ${e.cut ? "cut" : "open"}${
        e.delayMs > 0 ? `, delay ${e.delayMs} ms` : ""
      }`;
    case "sync.done":
      return `synced with ${e.peer}: sent ${formatCount(e.sent)}, received ${
        formatCount(e.received)
      } in ${formatCount(e.ms)} ms`;
    case "peer.rejected":
      return `${e.remote}: ${e.reason}`;
    case "whatsat":
      return `${e.client} r=${e.radiusKm}km ≤${e.bound}: ${e.provider} ${e.status}, ${
        plural(e.count, "result")
      } in ${millis(e.latencyMs)} ms${e.coalesced ? " (shared)" : ""}${
        e.error ? ` — ${e.error}` : ""
      }`;
    case "receipt.late":
      return `${e.client}: no receipt from ${e.peers.join(", ")} in ${millis(e.waitedMs)} ms`;
    case "error":
      return `${e.reason}: ${e.message}`;
    case "invalid":
      return `#${e.conn} ${e.reason}: ${e.line}`;
    case "persist.commit":
      return `${e.ok ? "committed" : "failed to commit"} ${e.records} record(s) in ${
        millis(e.seconds * 1000)
      } ms`;
    case "command":
      return `#${e.conn} ${e.verb} ${e.result}${e.reason ? ` (${e.reason})` : ""}`;
    case "line.in":
      return e.line;
    case "reply.out":
      return e.reply;
  }
}

/** " in 12 batches" for a busy tick's summary of several batches (dashboard/coalesce.ts). */
function batches(n: number | undefined): string {
  return n !== undefined && n > 1 ? ` in ${formatCount(n)} batches` : "";
}

function listed(clients: string[], count: number): string {
  if (clients.length === 0) return "";
  return ` (${clients.join(", ")}${count > clients.length ? ", …" : ""})`;
}

/** Time of day with milliseconds, local time: `14:03:07.123`. */
export function clock(t: number): string {
  const d = new Date(t);
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${
    p(d.getMilliseconds(), 3)
  }`;
}
