/**
 * The protocol console: sends one command line to a chosen server over real TCP (through
 * `POST /api/command`) and shows the raw reply, byte for byte (as text).
 */

import { useState } from "preact/hooks";
import { control, IS_BROWSER, setToken, token, useInitial, useSnapshot } from "./_live.ts";
import { isBlankLine } from "../../servers/protocol.ts";

interface Exchange {
  id: number;
  server: string;
  line: string;
  reply: string;
  ms?: number;
  error?: string;
}

let seq = 0;

export default function Console() {
  const init = useInitial();
  const snap = useSnapshot();
  const [server, setServer] = useState(snap.servers[0]?.name ?? "");
  const [line, setLine] = useState(
    "IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 " + "1621464827.959498503",
  );
  const [history, setHistory] = useState<Exchange[]>([]);
  const [sending, setSending] = useState(false);
  const [tokenDraft, setTokenDraft] = useState("");
  const needToken = init.tokenRequired && (!IS_BROWSER || !token.value);

  async function send(ev: Event) {
    ev.preventDefault();
    // Blank by the protocol's whitespace (trim() also drops NBSP, which the server answers).
    if (isBlankLine(line) || !server) return;
    setSending(true);
    const res = await control<{ reply: string; ms: number }>("/api/command", { server, line });
    setSending(false);
    const x: Exchange = {
      id: ++seq,
      server,
      line,
      reply: res.data.reply ?? "",
      ms: res.data.ms,
      error: res.ok ? res.data.error : res.data.error ?? `HTTP ${res.status}`,
    };
    setHistory((h) => [x, ...h].slice(0, 20));
  }

  function preset(kind: "iamat" | "whatsat" | "bad") {
    const now = (Date.now() / 1000).toFixed(9);
    if (kind === "iamat") setLine(`IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 ${now}`);
    else if (kind === "whatsat") setLine("WHATSAT kiwi.cs.ucla.edu 10 5");
    else setLine("WHATSAT kiwi.cs.ucla.edu 1- 5");
  }

  return (
    <div class="console">
      {needToken && (
        <form
          class="token-form"
          onSubmit={(e) => {
            e.preventDefault();
            setToken(tokenDraft.trim());
          }}
        >
          <label>
            Control token
            <input
              type="password"
              value={tokenDraft}
              onInput={(e) => setTokenDraft(e.currentTarget.value)}
              placeholder="printed when the dashboard started"
              autocomplete="off"
            />
          </label>
          <button class="btn" type="submit">Use</button>
        </form>
      )}
      <form class="console-form" onSubmit={send}>
        <select
          value={server}
          onChange={(e) => setServer(e.currentTarget.value)}
          aria-label="Server"
          data-testid="console-server"
        >
          {snap.servers.map((s) => (
            <option key={s.name} value={s.name}>{s.name}{s.running ? "" : " (stopped)"}</option>
          ))}
        </select>
        <input
          class="mono"
          type="text"
          value={line}
          onInput={(e) => setLine(e.currentTarget.value)}
          aria-label="Command"
          data-testid="console-line"
          spellcheck={false}
          autocomplete="off"
        />
        <button class="btn btn-primary" type="submit" disabled={sending} data-testid="console-send">
          {sending ? "Sending…" : "Send"}
        </button>
      </form>
      <div class="presets">
        <button type="button" class="link-btn" onClick={() => preset("iamat")}>IAMAT now</button>
        <button type="button" class="link-btn" onClick={() => preset("whatsat")}>WHATSAT</button>
        <button type="button" class="link-btn" onClick={() => preset("bad")}>invalid</button>
      </div>
      <div class="console-out" data-testid="console-out">
        {history.length === 0 && (
          <p class="empty muted">Replies appear here, exactly as the server sent them.</p>
        )}
        {history.map((x) => (
          <div key={x.id} class="exchange">
            <div class="cmd mono">
              <span class="muted">{x.server} ›</span> {x.line}
            </div>
            {x.reply && <pre class="reply" data-testid="console-reply">{x.reply}</pre>}
            {x.error && <p class="note note-error">{x.error}</p>}
            {x.ms !== undefined && <div class="muted small">{x.ms} ms</div>}
          </div>
        ))}
      </div>
    </div>
  );
}
