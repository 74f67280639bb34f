/**
 * A simulated herd for the dashboard's own tests and demos: it has the `HerdView` shape, emits
 * the real event types on a real `EventBus`, floods records along its links with small delays,
 * and (optionally) listens on TCP with a toy line protocol (IAMAT / WHATSAT / `?`) so the console
 * has something to talk to. It is not the herd (servers/herd.ts is): no store, no peers, no
 * Places. Run it: `deno run -A web/demo_herd.ts` serves a dashboard on it.
 *
 * @module
 */

import { EventBus } from "../../servers/events.ts";
import { type AtFields, compareRecords, sameRecord } from "../../servers/record.ts";
import {
  formatAt,
  formatInvalid,
  formatWhatsatReply,
  parseCommand,
} from "../../servers/protocol.ts";
import type { HerdSnapshot, HerdView, RecordSnapshot } from "../types.ts";
import { closeQuietly } from "../../servers/io.ts";
import { hostPort } from "../../servers/http_host.ts";
import { SEED_LINKS, SEED_NAMES } from "../../servers/config.ts";

/** The default herd's links: the seed's (servers/config.ts). */
export const DEFAULT_LINKS = SEED_LINKS;

/** The default herd's names, in the seed's port order. */
export const DEFAULT_NAMES = SEED_NAMES;

interface DemoServer {
  name: string;
  host: string;
  port: number;
  running: boolean;
  connections: number;
  neighbors: string[];
  records: Map<string, RecordSnapshot>;
  listener?: Deno.TcpListener;
  conns: Set<Deno.TcpConn>;
}

/** Options for {@linkcode DemoHerd}. */
export interface DemoHerdOptions {
  names?: readonly string[];
  links?: readonly (readonly [string, string])[];
  /** Listen on TCP (port 0 each) with the toy protocol. Default false. */
  tcp?: boolean;
  /** Delay of one propagation hop, ms. Default 15. */
  hopMs?: number;
  places?: string;
}

/** Formats degrees as ISO 6709 text. */
export function formatLocation(lat: number, lng: number): string {
  const f = (v: number) => (v >= 0 ? "+" : "-") + Math.abs(v).toFixed(6);
  return f(lat) + f(lng);
}

/** A simulated herd; see the module doc. */
export class DemoHerd implements HerdView {
  readonly bus = new EventBus();
  readonly #servers = new Map<string, DemoServer>();
  readonly #links: readonly (readonly [string, string])[];
  readonly #tcp: boolean;
  readonly #hopMs: number;
  readonly #places: string;
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  #conn = 0;
  #sim: ReturnType<typeof setInterval> | undefined;

  constructor(opts: DemoHerdOptions = {}) {
    const names = opts.names ?? DEFAULT_NAMES;
    this.#links = opts.links ?? DEFAULT_LINKS;
    this.#tcp = opts.tcp ?? false;
    this.#hopMs = opts.hopMs ?? 15;
    this.#places = opts.places ?? "offline";
    names.forEach((name, i) => {
      const neighbors = this.#links.flatMap(([a, b]) => (a === name ? [b] : b === name ? [a] : []));
      this.#servers.set(name, {
        name,
        host: "127.0.0.1",
        port: 12000 + i,
        running: false,
        connections: 0,
        neighbors,
        records: new Map(),
        conns: new Set(),
      });
    });
  }

  /** Starts every server. */
  async start(): Promise<void> {
    for (const name of this.#servers.keys()) await this.startServer(name);
  }

  /** Stops every server and the simulation. */
  async stop(): Promise<void> {
    this.stopSimulation();
    for (const name of this.#servers.keys()) await this.stopServer(name);
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
  }

  #emitLink(a: string, b: string, up: boolean): void {
    const t = Date.now();
    for (const [x, y] of [[a, b], [b, a]]) {
      this.bus.emit(
        up
          ? { kind: "link.up", t, server: x, peer: y, direction: x < y ? "out" : "in" }
          : { kind: "link.down", t, server: x, peer: y, reason: "peer stopped" },
      );
    }
  }

  async startServer(name: string): Promise<void> {
    const s = this.#get(name);
    if (s.running) return;
    if (this.#tcp) {
      s.listener = Deno.listen({ hostname: s.host, port: 0 });
      s.port = (s.listener.addr as Deno.NetAddr).port;
      this.#serve(s, s.listener);
    }
    s.running = true;
    this.bus.emit({ kind: "server.up", t: Date.now(), server: name, host: s.host, port: s.port });
    for (const n of s.neighbors) {
      if (this.#servers.get(n)?.running) this.#emitLink(name, n, true);
    }
    await Promise.resolve();
  }

  async stopServer(name: string): Promise<void> {
    const s = this.#get(name);
    if (!s.running) return;
    s.running = false;
    closeQuietly(s.listener);
    s.listener = undefined;
    for (const c of s.conns) {
      closeQuietly(c);
    }
    s.conns.clear();
    s.connections = 0;
    for (const n of s.neighbors) {
      if (this.#servers.get(n)?.running) this.#emitLink(name, n, false);
    }
    this.bus.emit({ kind: "server.down", t: Date.now(), server: name });
    await Promise.resolve();
  }

  #get(name: string): DemoServer {
    const s = this.#servers.get(name);
    if (!s) throw new Error(`no server named ${name}`);
    return s;
  }

  #linkUp(a: string, b: string): boolean {
    return Boolean(this.#servers.get(a)?.running && this.#servers.get(b)?.running);
  }

  /** Every record every server holds (seeds the dashboard's client index). */
  *allRecords(): IterableIterator<RecordSnapshot> {
    for (const s of this.#servers.values()) yield* s.records.values();
  }

  /** The record each server holds for `client` (the client panel). */
  holdings(client: string): { server: string; running: boolean; record: RecordSnapshot | null }[] {
    return [...this.#servers.values()].map((s) => ({
      server: s.name,
      running: s.running,
      record: s.records.get(client) ?? null,
    }));
  }

  snapshot(): HerdSnapshot {
    const newest = new Map<string, RecordSnapshot>();
    for (const s of this.#servers.values()) {
      for (const r of s.records.values()) {
        const o = newest.get(r.client);
        if (!o || compareRecords(r, o) > 0) newest.set(r.client, r);
      }
    }
    return {
      servers: [...this.#servers.values()].map((s) => ({
        name: s.name,
        host: s.host,
        port: s.port,
        running: s.running,
        connections: s.connections,
        records: s.records.size,
        neighbors: [...s.neighbors],
        links: s.neighbors.map((peer) => ({ peer, up: s.running && this.#linkUp(s.name, peer) })),
      })),
      records: [...newest.values()].slice(-5000),
      places: this.#places,
    };
  }

  #later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      fn();
    }, ms);
    this.#timers.add(t);
  }

  /** Stores and floods a record as if `server` had it from a client (null) or a peer. */
  #accept(s: DemoServer, rec: AtFields, from: string | null, lat: number, lng: number): void {
    const old = s.records.get(rec.client);
    if (old && compareRecords(rec, old) <= 0) {
      this.bus.emit({
        kind: "location.dropped",
        t: Date.now(),
        server: s.name,
        record: rec,
        from,
        reason: sameRecord(old, rec) ? "duplicate" : "stale",
      });
      return;
    }
    s.records.set(rec.client, { ...rec, lat: lat, lng: lng });
    this.bus.emit({
      kind: "location.accepted",
      t: Date.now(),
      server: s.name,
      record: rec,
      from,
      lat: lat,
      lng: lng,
    });
    for (const n of s.neighbors) {
      if (n === from || !this.#linkUp(s.name, n)) continue;
      this.bus.emit({
        kind: "propagation.sent",
        t: Date.now(),
        server: s.name,
        to: n,
        records: [rec],
      });
      this.#later(this.#hopMs, () => {
        const peer = this.#servers.get(n);
        if (!peer?.running) return;
        this.bus.emit({
          kind: "propagation.received",
          t: Date.now(),
          server: n,
          from: s.name,
          records: [rec],
        });
        this.#accept(peer, rec, s.name, lat, lng);
      });
    }
  }

  /** Simulates an IAMAT from `client` at `server`. */
  report(server: string, client: string, lat: number, lng: number, time?: string): AtFields {
    const location = formatLocation(lat, lng);
    return this.#report(this.#get(server), client, location, lat, lng, time);
  }

  #report(
    s: DemoServer,
    client: string,
    location: string,
    lat: number,
    lng: number,
    time = (Date.now() / 1000).toFixed(9),
  ): AtFields {
    const rec: AtFields = { origin: s.name, diff: "+0.000000000", client, location, time };
    if (s.running) this.#accept(s, rec, null, lat, lng);
    return rec;
  }

  /** Simulates an answered WHATSAT. */
  whatsat(server: string, client: string, radiusKm = 10, bound = 5): void {
    this.bus.emit({
      kind: "whatsat",
      t: Date.now(),
      server,
      client,
      radiusKm,
      bound,
      provider: this.#places,
      status: "OK",
      count: Math.min(bound, 3),
      latencyMs: 2 + Math.round(Math.random() * 30),
      coalesced: false,
    });
  }

  /** Random clients wandering around the world, `perSecond` reports a second. */
  simulate(perSecond = 4, clients = 40): void {
    this.stopSimulation();
    const names = [...this.#servers.keys()];
    const pos = Array.from({ length: clients }, () => ({
      lat: Math.random() * 120 - 55,
      lng: Math.random() * 340 - 170,
    }));
    let n = 0;
    this.#sim = setInterval(() => {
      const i = Math.floor(Math.random() * clients);
      const p = pos[i];
      p.lat = Math.max(-80, Math.min(80, p.lat + (Math.random() - 0.5) * 6));
      p.lng = ((p.lng + (Math.random() - 0.5) * 10 + 540) % 360) - 180;
      const server = names[Math.floor(Math.random() * names.length)];
      this.report(server, `client-${i}.example`, p.lat, p.lng);
      if (++n % 7 === 0) this.whatsat(server, `client-${i}.example`, 10, 5);
    }, 1000 / perSecond);
  }

  stopSimulation(): void {
    if (this.#sim !== undefined) clearInterval(this.#sim);
    this.#sim = undefined;
  }

  async #serve(s: DemoServer, listener: Deno.TcpListener): Promise<void> {
    try {
      for await (const conn of listener) this.#client(s, conn);
    } catch { /* listener closed */ }
  }

  async #client(s: DemoServer, conn: Deno.TcpConn): Promise<void> {
    const id = ++this.#conn;
    const addr = conn.remoteAddr as Deno.NetAddr;
    const remote = hostPort(addr.hostname, addr.port);
    s.conns.add(conn);
    s.connections++;
    this.bus.emit({ kind: "client.connect", t: Date.now(), server: s.name, conn: id, remote });
    const buf = new Uint8Array(4096);
    let pending = "";
    try {
      while (true) {
        const n = await conn.read(buf);
        if (n === null) break;
        for (let i = 0; i < n; i++) pending += String.fromCharCode(buf[i]);
        let nl: number;
        while ((nl = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, nl).replace(/\r$/, "");
          pending = pending.slice(nl + 1);
          if (!line.trim()) continue;
          this.bus.emit({ kind: "line.in", t: Date.now(), server: s.name, conn: id, line });
          const reply = this.#answer(s, line);
          this.bus.emit({ kind: "reply.out", t: Date.now(), server: s.name, conn: id, reply });
          const bytes = Uint8Array.from(reply, (ch) => ch.charCodeAt(0) & 0xff);
          await conn.write(bytes);
        }
      }
    } catch { /* closed */ }
    if (s.conns.delete(conn)) {
      s.connections = Math.max(0, s.connections - 1);
      closeQuietly(conn);
    }
    this.bus.emit({
      kind: "client.disconnect",
      t: Date.now(),
      server: s.name,
      conn: id,
      remote,
      reason: "eof",
    });
  }

  /** A client line, parsed as the herd parses it (protocol.ts); the toy part is the answer. */
  #answer(s: DemoServer, line: string): string {
    const cmd = parseCommand(line);
    if (cmd.verb === "IAMAT") {
      const rec = this.#report(s, cmd.client, cmd.location, cmd.lat, cmd.lng, cmd.time);
      return `${formatAt(rec)}\n`;
    }
    if (cmd.verb === "WHATSAT") {
      const r = s.records.get(cmd.client);
      if (r) {
        this.whatsat(s.name, cmd.client, cmd.radiusKm, cmd.bound);
        const body = JSON.stringify(
          { html_attributions: [], results: [], status: "ZERO_RESULTS" },
          null,
          2,
        );
        return formatWhatsatReply(formatAt(r), body);
      }
    }
    return formatInvalid(line);
  }
}

if (import.meta.main) {
  const { serveDashboard } = await import("../app.ts");
  const herd = new DemoHerd({ tcp: true });
  await herd.start();
  herd.simulate(Number(Deno.env.get("DEMO_RATE") ?? 4));
  const port = Number(Deno.args[0] ?? 8080);
  await serveDashboard(herd, { host: "127.0.0.1", port });
}
