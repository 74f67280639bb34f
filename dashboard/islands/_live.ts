/**
 * The page's live store, shared by every island (one module instance per page: the islands are
 * bundled with code splitting, so this module is one shared chunk).
 *
 * It starts from the data the server embedded in the page, then keeps one EventSource on
 * `/api/events` (resuming after the embedded `lastId`, and after `Last-Event-ID` on reconnects),
 * applies events to the snapshot, and refreshes the server list from `/api/state` every few
 * seconds and at once after a gap or a restarted dashboard.
 *
 * On the server (SSR) nothing here runs: islands read the initial data from context instead.
 *
 * @module
 */

import { createContext } from "preact";
import { useContext } from "preact/hooks";
import { batch, signal } from "@preact/signals";
import type {
  ClientDetail,
  DashEvent,
  GapNotice,
  HelloNotice,
  HerdSnapshot,
  InitialData,
  MergedNotice,
  SeriesData,
  SeriesTick,
} from "../types.ts";
import { applyEvents } from "./_model.ts";

/** True in a browser, false while the server renders. */
export const IS_BROWSER = typeof document !== "undefined";

/** The page's initial data, provided around every island (server and browser alike). */
export const InitialContext = createContext<InitialData | null>(null);

/** Connection state of the event stream. */
export type LiveStatus = "connecting" | "live" | "reconnecting" | "offline";

/** Most events the feed keeps. */
export const FEED_MAX = 1_000;
/** Most WHATSAT events the Places log keeps. */
export const WHATSAT_MAX = 200;

export const snapshot = signal<HerdSnapshot>({ servers: [], records: [], places: "" });
export const feed = signal<DashEvent[]>([]);
export const whatsats = signal<DashEvent[]>([]);
export const status = signal<LiveStatus>("connecting");
/** Id of the newest event applied. */
export const lastId = signal(0);
/** Location updates per second stored at each server (mean of the last 5 s, from `series`). */
export const rates = signal<Record<string, number>>({});
/** Distinct clients across the herd; `exact` false when it is a lower bound (remote herd). */
export const clientTotal = signal<{ total: number; exact: boolean }>({ total: 0, exact: true });
/** Per-server history (one point a second), kept by the dashboard and extended live. */
export const series = signal<SeriesData>({ step: 1000, t: 0, servers: {} });
/** The client the person is following (display text), and what the dashboard knows of it. */
export const selected = signal<string | null>(null);
export const detail = signal<ClientDetail | null>(null);
/** Events lost to gaps (the stream told us; the state was refetched). */
export const gapCount = signal(0);
/**
 * Events a busy herd's stream folded into others (each client's best location, one propagation
 * summary per link a tick): nothing the map or the counts need is lost, the feed shows fewer.
 */
export const mergedCount = signal(0);

type Listener = (events: DashEvent[]) => void;
const listeners = new Set<Listener>();

/** Calls `fn` with every batch of new events; returns the unsubscribe function. */
export function onEvents(fn: Listener): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** The initial data (throws when used outside an island wrapper). */
export function useInitial(): InitialData {
  const init = useContext(InitialContext);
  if (!init) throw new Error("island rendered without InitialContext");
  return init;
}

/** The live snapshot in the browser, the embedded one while the server renders. */
export function useSnapshot(): HerdSnapshot {
  const init = useInitial();
  return IS_BROWSER ? snapshot.value : init.snapshot;
}

/** The feed (newest last). */
export function useFeed(): DashEvent[] {
  const init = useInitial();
  return IS_BROWSER ? feed.value : init.events;
}

/** The client total (exact, or a lower bound for a remote herd). */
export function useClientTotal(): { total: number; exact: boolean } {
  const init = useInitial();
  return IS_BROWSER ? clientTotal.value : { total: init.clients.total, exact: init.clients.exact };
}

/** The sparklines' data. */
export function useSeries(): SeriesData {
  const init = useInitial();
  return IS_BROWSER ? series.value : init.series;
}

/** WHATSAT events (newest last). */
export function useWhatsats(): DashEvent[] {
  const init = useInitial();
  return IS_BROWSER ? whatsats.value : init.whatsats;
}

// ---- control token ----

const TOKEN_KEY = "herd-dashboard-token";

/** The control token the person gave (from `?token=` or the token field), if any. */
export const token = signal<string>("");

/** Remembers the token for this tab. */
export function setToken(t: string): void {
  token.value = t;
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled */ }
}

/** POSTs JSON to a control endpoint with the token; resolves to the JSON body and status. */
export async function control<T = Record<string, unknown>>(
  url: string,
  body: unknown,
): Promise<{ ok: boolean; status: number; data: T & { error?: string } }> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token.value) headers.authorization = `Bearer ${token.value}`;
  try {
    const res = await fetch(url, { method: "POST", headers, body: JSON.stringify(body ?? {}) });
    let data: T & { error?: string };
    try {
      data = await res.json();
    } catch {
      data = { error: `HTTP ${res.status}` } as T & { error?: string };
    }
    return { ok: res.ok, status: res.status, data };
  } catch (err) {
    return { ok: false, status: 0, data: { error: String(err) } as T & { error?: string } };
  }
}

// ---- the stream ----

let started = false;
/** Every hello received (tests check resumes). */
const hellos: HelloNotice[] = [];
let boot = "";
/** Live `series` messages received (tests check the sparklines move by the stream). */
const seriesTicks = { count: 0 };
let source: EventSource | undefined;

/** The rates shown beside each server: the mean of its last five points. */
function ratesOf(data: SeriesData): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, l] of Object.entries(data.servers)) {
    const last = l.upd.slice(-5);
    out[name] = last.length === 0
      ? 0
      : Math.round((last.reduce((x, y) => x + y, 0) / last.length) * 10) / 10;
  }
  return out;
}

function setSeries(data: SeriesData): void {
  batch(() => {
    series.value = data;
    rates.value = ratesOf(data);
  });
}

/** Appends one live point to every server's series (same length kept). */
function addTick(tick: SeriesTick): void {
  const old = series.value;
  const servers: SeriesData["servers"] = {};
  for (const [name, [upd, conns]] of Object.entries(tick.points)) {
    const l = old.servers[name] ?? { upd: [], conns: [] };
    const keep = Math.max(l.upd.length, 2);
    servers[name] = {
      upd: l.upd.concat(upd).slice(-keep),
      conns: l.conns.concat(conns).slice(-keep),
    };
  }
  setSeries({ step: old.step, t: tick.t, servers });
}

// ---- the followed client ----

let detailSeq = 0;

/** Loads what the dashboard knows of the selected client into `detail`. */
export async function loadDetail(): Promise<void> {
  const id = selected.value;
  const seq = ++detailSeq;
  if (id === null) {
    detail.value = null;
    return;
  }
  try {
    const res = await fetch(`/api/client?id=${encodeURIComponent(id)}`);
    const body = res.ok ? await res.json() as ClientDetail : null;
    if (seq === detailSeq) detail.value = body;
  } catch { /* next update */ }
}

/** Follows a client (null: none): the map, the table and the client panel show it. */
export function selectClient(id: string | null): void {
  if (selected.value === id) return;
  batch(() => {
    selected.value = id;
    detail.value = null;
  });
  loadDetail();
}

let detailTimer: ReturnType<typeof setTimeout> | undefined;

/** Reloads the followed client's detail soon after events about it (at most ~3 times a second). */
function followSelected(events: DashEvent[]): void {
  const id = selected.value;
  if (id === null || detailTimer !== undefined) return;
  const touched = events.some((e) =>
    (e.kind === "location.accepted" || e.kind === "location.dropped") && e.record.client === id
  );
  if (!touched) return;
  detailTimer = setTimeout(() => {
    detailTimer = undefined;
    loadDetail();
  }, 300);
}

/** Kinds that change per-server counts the events cannot tell exactly (records per server). */
const REFRESH_KINDS = new Set(["location.accepted", "server.up", "sync.done"]);
let refreshTimer: ReturnType<typeof setTimeout> | undefined;

/** `frameId`: the frame's SSE id (its last event's, or a merged one's, when the last was merged). */
function receive(events: DashEvent[], frameId: number): void {
  if (events.length === 0) return;
  if (refreshTimer === undefined && events.some((e) => REFRESH_KINDS.has(e.kind))) {
    // Catch up the counts soon after a change, at most about twice a second.
    refreshTimer = setTimeout(() => {
      refreshTimer = undefined;
      refresh(false);
    }, 400);
  }
  batch(() => {
    snapshot.value = applyEvents(snapshot.value, events);
    const f = feed.value.concat(events);
    feed.value = f.length > FEED_MAX ? f.slice(f.length - FEED_MAX) : f;
    const w = events.filter((e) => e.kind === "whatsat");
    if (w.length > 0) {
      const all = whatsats.value.concat(w);
      whatsats.value = all.length > WHATSAT_MAX ? all.slice(all.length - WHATSAT_MAX) : all;
    }
    lastId.value = Math.max(events[events.length - 1].id, frameId || 0);
  });
  followSelected(events);
  for (const fn of listeners) {
    try {
      fn(events);
    } catch (err) {
      console.error(err);
    }
  }
}

/** Refetches the snapshot (servers only unless `withRecords`). */
let gapRefresh: ReturnType<typeof setTimeout> | undefined;

export async function refresh(withRecords = false): Promise<void> {
  try {
    const res = await fetch(`/api/state${withRecords ? "" : "?records=0"}`);
    if (!res.ok) return;
    const s: HerdSnapshot & { clients?: number; exact?: boolean; series?: SeriesData } = await res
      .json();
    const { clients, exact, series: data, ...snap } = s;
    batch(() => {
      snapshot.value = withRecords ? snap : { ...snap, records: snapshot.value.records };
      if (typeof clients === "number") {
        clientTotal.value = { total: clients, exact: exact !== false };
      }
      if (data) setSeries(data);
    });
  } catch { /* next time */ }
}

function connect(after: number): void {
  status.value = status.value === "connecting" ? "connecting" : "reconnecting";
  // The browser adds Last-Event-ID on its own reconnects, which the server prefers over `after`.
  const es = new EventSource(`/api/events?after=${after}`);
  source = es;
  es.addEventListener("hello", (m) => {
    const hello: HelloNotice = JSON.parse((m as MessageEvent).data);
    hellos.push(hello);
    status.value = "live";
    if (boot && hello.boot !== boot) {
      // The dashboard restarted: ids start over and what we hold may be stale.
      lastId.value = 0;
      refresh(true);
    }
    boot = hello.boot;
  });
  es.addEventListener("gap", (m) => {
    const gap: GapNotice = JSON.parse((m as MessageEvent).data);
    gapCount.value += gap.to - gap.from + 1;
    // A busy herd sends a gap every tick: refetch the state at most every 2 s.
    if (!gapRefresh) {
      gapRefresh = setTimeout(() => {
        gapRefresh = undefined;
        refresh(true);
      }, 2_000);
      refresh(true);
    }
  });
  es.addEventListener("merged", (m) => {
    try {
      const n: MergedNotice = JSON.parse((m as MessageEvent).data);
      mergedCount.value += n.merged;
    } catch (err) {
      console.error("bad merged message", err);
    }
  });
  es.addEventListener("series", (m) => {
    try {
      addTick(JSON.parse((m as MessageEvent).data));
      seriesTicks.count++;
    } catch (err) {
      console.error("bad series message", err);
    }
  });
  es.onmessage = (m) => {
    try {
      receive(JSON.parse(m.data), Number(m.lastEventId));
    } catch (err) {
      console.error("bad event frame", err);
    }
  };
  es.onerror = () => {
    status.value = es.readyState === EventSource.CLOSED ? "offline" : "reconnecting";
    if (es.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. an HTTP error): try again ourselves from what we have.
      setTimeout(() => connect(lastId.value), 2_000);
    }
  };
}

/** Starts the store once per page (the island boot code calls it before hydrating). */
export function start(init: InitialData): void {
  if (started || !IS_BROWSER) return;
  started = true;
  boot = init.boot;
  batch(() => {
    snapshot.value = init.snapshot;
    feed.value = init.events;
    whatsats.value = init.whatsats;
    lastId.value = init.lastId;
    clientTotal.value = { total: init.clients.total, exact: init.clients.exact };
  });
  setSeries(init.series);
  try {
    const url = new URL(location.href);
    const t = url.searchParams.get("token");
    if (t) {
      setToken(t);
      url.searchParams.delete("token");
      history.replaceState(null, "", url.pathname + url.search + url.hash);
    } else {
      token.value = sessionStorage.getItem(TOKEN_KEY) ?? "";
    }
  } catch { /* no storage */ }
  connect(init.lastId);
  setInterval(() => refresh(false), 3_000);
  // Tests read this to wait for the stream.
  (globalThis as { __herdLive?: unknown }).__herdLive = {
    status,
    lastId,
    feed,
    snapshot,
    series,
    clientTotal,
    mergedCount,
    selected,
    detail,
    hellos,
    seriesTicks,
    source: () => source,
  };
}
