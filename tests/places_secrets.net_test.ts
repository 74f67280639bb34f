/**
 * The API key and the herd secret reach no reply, log line, event (what the dashboard shows) or
 * error text, whatever a Places upstream does: it resets the connection, answers garbage, cuts
 * its answer short, never answers, redirects, or quotes the request (the key in the legacy
 * API's query, or the New API's header) back in an error. A fetch failure's message names the
 * whole URL (`error sending request for url (http://...&key=...)`), and the key may hold
 * characters the URL carries percent-encoded, or a `)` that ends Deno's parenthesis early.
 * Over real sockets: a raw TCP fake upstream, an in-process herd, WHATSAT over TCP.
 */

import assert from "node:assert/strict";
import { startSeedHerd, TcpClient } from "./_helpers/net.ts";
import { createPlacesProvider } from "../servers/places/select.ts";
import { openLogs } from "../servers/log.ts";

/** A key with characters the query string encodes, and a `)` it does not. */
const KEY = "AIzaSyFakeKey1)secondHalf22+thirdPart3/fourthPart=fifthPart&sixth%-seventhPart";
const SECRET = "test-secret-0123456789";
const UCLA = "+34.068930-118.445127";
const TIME = "1700000000.123456789";

type Mode =
  | "reset"
  | "garbage"
  | "truncated"
  | "badChunk"
  | "hang"
  | "echoText"
  | "echoJson"
  | "echoLower"
  | "redirect";
const MODES: Mode[] = [
  "reset",
  "garbage",
  "truncated",
  "badChunk",
  "hang",
  "echoText",
  "echoJson",
  "echoLower",
  "redirect",
];

/** A raw TCP upstream that misbehaves as `mode` says (the request it got is quoted by echoes). */
function startRawUpstream() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const state = { mode: "reset" as Mode, requests: 0 };
  const held = new Set<Deno.Conn>();
  const enc = new TextEncoder();
  const serve = async (conn: Deno.Conn) => {
    held.add(conn);
    try {
      // The request head (and a body, if any, in the same reads).
      let head = "";
      const buf = new Uint8Array(16384);
      while (!head.includes("\r\n\r\n")) {
        const n = await conn.read(state.mode === "reset" && head === "" ? buf.subarray(0, 1) : buf);
        if (n === null) return;
        head += new TextDecoder().decode(buf.subarray(0, n));
        // Closing with the rest unread sends a reset.
        if (state.mode === "reset") return;
      }
      state.requests++;
      const send = (text: string) => conn.write(enc.encode(text));
      let quoted = head.replace(/\r\n/g, " | ");
      switch (state.mode) {
        case "garbage":
          await send("\x00\xffNOT HTTP " + quoted + "\r\n\r\n");
          return;
        case "truncated":
          await send('HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n{"results":[');
          return;
        case "badChunk":
          await send("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz" + quoted + "\r\n");
          return;
        case "hang":
          await new Promise(() => {}); // until the client goes (the close below ends the read)
          return;
        case "echoText": {
          const body = `bad request: ${quoted}`;
          await send(
            `HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: ${
              enc.encode(body).length
            }\r\nconnection: close\r\n\r\n${body}`,
          );
          return;
        }
        case "echoJson":
        case "echoLower": {
          // echoLower: a proxy that normalises percent-escapes to lower case (%2f, not %2F).
          if (state.mode === "echoLower") {
            quoted = quoted.replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase());
          }
          const body = JSON.stringify({
            status: "REQUEST_DENIED",
            error_message: `The request ${quoted} is denied`,
            error: { code: 403, message: `Denied: ${quoted}` },
          });
          await send(
            `HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: ${
              enc.encode(body).length
            }\r\nconnection: close\r\n\r\n${body}`,
          );
          return;
        }
        case "redirect": {
          const path = head.split(" ")[1];
          await send(
            `HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:1${path}\r\n` +
              `content-length: 0\r\nconnection: close\r\n\r\n`,
          );
          return;
        }
      }
    } catch {
      // the client went
    } finally {
      held.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) serve(conn);
  })().catch(() => {});
  return {
    state,
    origin: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    async close() {
      listener.close();
      for (const c of held) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await accepting;
    },
  };
}

/** Every form of `text` a leak could take: as is, percent-encoded, and its longer pieces. */
function forms(text: string): string[] {
  const pieces = text.split(/[^A-Za-z0-9]+/).filter((p) => p.length >= 8);
  return [text, encodeURIComponent(text), encodeURI(text), ...pieces];
}

for (const places of ["new", "legacy"] as const) {
  Deno.test(`places ${places}: the key and the secret reach no reply, log line or event, whatever the upstream does`, async () => {
    const upstream = startRawUpstream();
    const t = await startSeedHerd({
      places: createPlacesProvider({
        places,
        apiKey: KEY,
        baseUrl: upstream.origin,
        timeoutMs: 1000,
      }),
    });
    const events: string[] = [];
    const off = t.herd.bus.subscribe((e) => events.push(JSON.stringify(e)));
    const dir = await Deno.makeTempDir({ prefix: "places_secrets_" });
    const logs = await openLogs(t.herd.bus, dir, [...t.herd.servers.keys()]);
    const c = await TcpClient.connect(t.port("Hill"));
    const replies: string[] = [];
    try {
      await c.send(`IAMAT kiwi ${UCLA} ${TIME}\n`);
      await c.replies(1);
      for (const [i, mode] of MODES.entries()) {
        upstream.state.mode = mode;
        await c.send(`WHATSAT kiwi 10 ${i + 1}\n`);
        const reply = (await c.replies(2 + i, 10_000))[1 + i];
        replies.push(reply);
        // A failure says why in a line, and names no URL (its query holds the client's
        // position, and for legacy the key).
        const message = /"error_message" : "([^"]*)"/.exec(reply)?.[1] ?? "";
        if (["reset", "garbage", "truncated", "badChunk"].includes(mode)) {
          assert.doesNotMatch(message, /\/maps\/api|searchNearby|https?:\/\//, mode);
          assert.match(message, /^Cannot reach 127\.0\.0\.1:\d+: \S/, mode);
        }
        // The documented upstream-error layout: the AT line, then an error body that says why.
        assert.match(reply, /^AT Hill .*\n\{\n/, mode);
        assert.match(reply, /"status" : "(UNKNOWN_ERROR|REQUEST_DENIED|INVALID_REQUEST)"/, mode);
        assert.match(reply, /"error_message" : "[^"]+"/, mode);
      }
      assert.ok(upstream.state.requests >= MODES.length - 1, "the upstream got the requests");
    } finally {
      await c.close();
      await t.close();
      off();
      await logs.close();
      await upstream.close();
    }
    let logText = "";
    for await (const e of Deno.readDir(dir)) logText += await Deno.readTextFile(`${dir}/${e.name}`);
    await Deno.remove(dir, { recursive: true });
    assert.match(logText, /PLACES/, "the PLACES log lines are there");
    const texts: [string, string][] = [
      ["the logs", logText],
      ...replies.map((r, i): [string, string] => [`the reply (${MODES[i]})`, r]),
      ...events.map((e): [string, string] => ["an event", e]),
    ];
    for (const [where, text] of texts) {
      for (const secret of [...forms(KEY), SECRET]) {
        assert.ok(
          !text.includes(secret),
          `${JSON.stringify(secret)} is in ${where}: ${text.slice(0, 600)}`,
        );
      }
    }
  });
}
