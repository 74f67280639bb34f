/**
 * The server table: address, state, clients, connections, updates per second and links of each
 * server, with stop/start buttons (in-process herd only; the buttons explain when not possible).
 */

import { useState } from "preact/hooks";
import {
  control,
  IS_BROWSER,
  rates,
  refresh,
  useInitial,
  useSeries,
  useSnapshot,
} from "./_live.ts";
import { formatCount } from "./_model.ts";
import { hostPort } from "../../servers/http_host.ts";
import { Sparkline } from "./_spark.tsx";

/** A sign beside each link's name, with its state also in words for screen readers. */
const LINK_SIGN = { up: "✓", down: "✕", cut: "✂" } as const;

export default function ServerPanel() {
  const init = useInitial();
  const snap = useSnapshot();
  const rate = IS_BROWSER ? rates.value : {};
  const series = useSeries();
  const minutes = Math.round((series.step * 180) / 60_000);
  const [busy, setBusy] = useState<Record<string, boolean>>({});
  const [message, setMessage] = useState<{ text: string; error: boolean } | null>(null);
  /** The server whose Stop waits for a second, explicit click. */
  const [confirming, setConfirming] = useState<string | null>(null);

  async function act(name: string, action: "stop" | "start") {
    setConfirming(null);
    setBusy((b) => ({ ...b, [name]: true }));
    const res = await control(`/api/servers/${encodeURIComponent(name)}/${action}`, {});
    setBusy((b) => ({ ...b, [name]: false }));
    setMessage(
      res.ok
        ? { text: `${name}: ${action === "stop" ? "stopped" : "started"}`, error: false }
        : { text: `${name}: ${res.data.error ?? `HTTP ${res.status}`}`, error: true },
    );
    refresh(false);
  }

  return (
    <div class="servers">
      <div class="table-scroll">
        <table class="table">
          <thead>
            <tr>
              <th>Server</th>
              <th class="col-address">Address</th>
              <th class="num">Clients</th>
              <th class="num">Conns</th>
              <th class="num">Upd/s</th>
              <th class="col-spark" title={`last ${minutes} minutes`}>History</th>
              <th>Links</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {snap.servers.map((s) => (
              <tr key={s.name} data-server-row={s.name} data-running={String(s.running)}>
                <td class="name-cell">
                  <span class={`dot ${s.running ? "dot-live" : "dot-offline"}`} />
                  <strong>{s.name}</strong>
                </td>
                <td class="mono muted col-address">{hostPort(s.host, s.port)}</td>
                <td class="num" data-label="Clients">{formatCount(s.records)}</td>
                <td class="num" data-label="Conns">{formatCount(s.connections)}</td>
                <td class="num" data-label="Upd/s">
                  {s.running ? formatCount(rate[s.name] ?? 0) : "–"}
                </td>
                <td class="col-spark">
                  <Sparkline
                    values={series.servers[s.name]?.upd ?? []}
                    label={`${s.name} updates/s`}
                    testid={`spark-upd-${s.name}`}
                  />
                  <Sparkline
                    values={series.servers[s.name]?.conns ?? []}
                    label={`${s.name} connections`}
                    testid={`spark-conns-${s.name}`}
                  />
                </td>
                <td class="links-cell">
                  {s.neighbors.map((n) => {
                    const link = s.links.find((l) =>
                      l.peer === n
                    );
                    // Said in words and a sign, not by colour alone.
                    const state = link?.cut ? "cut" : link?.up ? "up" : "down";
                    return (
                      <span
                        key={n}
                        class={`chip chip-${state}`}
                        data-link-state={state}
                        title={`link to ${n}: ${state}`}
                      >
                        <span aria-hidden="true">{LINK_SIGN[state]}</span> {n}
                        <span class="sr-only">: {state}</span>
                      </span>
                    );
                  })}
                </td>
                <td class="actions">
                  {s.running && confirming === s.name
                    ? (
                      <span class="confirm" role="group" aria-label={`Stop ${s.name}?`}>
                        <button
                          type="button"
                          class="btn btn-danger"
                          data-action="confirm-stop"
                          data-server={s.name}
                          disabled={busy[s.name]}
                          onClick={() => act(s.name, "stop")}
                        >
                          Stop {s.name}
                        </button>
                        <button
                          type="button"
                          class="btn"
                          data-action="cancel-stop"
                          onClick={() =>
                            setConfirming(null)}
                        >
                          Cancel
                        </button>
                      </span>
                    )
                    : s.running
                    ? (
                      <button
                        type="button"
                        class="btn btn-danger"
                        data-action="stop"
                        data-server={s.name}
                        disabled={!init.canControl || busy[s.name]}
                        title={init.canControl
                          ? `Stop ${s.name}`
                          : "Remote herd: stop it where it runs"}
                        onClick={() => setConfirming(s.name)}
                      >
                        Stop…
                      </button>
                    )
                    : (
                      <button
                        type="button"
                        class="btn"
                        data-action="start"
                        data-server={s.name}
                        disabled={!init.canControl || busy[s.name]}
                        title={init.canControl
                          ? `Start ${s.name}`
                          : "Remote herd: start it where it runs"}
                        onClick={() => act(s.name, "start")}
                      >
                        Start
                      </button>
                    )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {message && (
        <p
          class={message.error ? "note note-error" : "note"}
          role="status"
          data-testid="server-message"
        >
          {message.text}
        </p>
      )}
    </div>
  );
}
