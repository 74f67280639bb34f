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
import { Sparkline } from "./_spark.tsx";

export default function ServerPanel() {
  const init = useInitial();
  const snap = useSnapshot();
  const rate = IS_BROWSER ? rates.value : {};
  const series = useSeries();
  const minutes = Math.round((series.step * 180) / 60_000);
  const [busy, setBusy] = useState<Record<string, boolean>>({});
  const [message, setMessage] = useState<{ text: string; error: boolean } | null>(null);

  async function act(name: string, action: "stop" | "start") {
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
                <td class="mono muted col-address">{s.host}:{s.port}</td>
                <td class="num">{formatCount(s.records)}</td>
                <td class="num">{formatCount(s.connections)}</td>
                <td class="num">{s.running ? formatCount(rate[s.name] ?? 0) : "–"}</td>
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
                    const up = s.links.some((l) =>
                      l.peer === n && l.up
                    );
                    return (
                      <span
                        key={n}
                        class={`chip ${up ? "chip-up" : "chip-down"}`}
                        title={up ? "up" : "down"}
                      >
                        {n}
                      </span>
                    );
                  })}
                </td>
                <td class="actions">
                  {s.running
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
                        onClick={() => act(s.name, "stop")}
                      >
                        Stop
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
