/** The Places query log: every WHATSAT answered, newest first. */

import { useWhatsats } from "./_live.ts";
import { clock, millis } from "./_model.ts";

const SHOWN = 100;

export default function PlacesLog() {
  const all = useWhatsats();
  const rows = all.slice(-SHOWN).reverse();
  return (
    <div class="table-scroll places">
      {rows.length === 0
        ? (
          <p class="empty muted">
            No WHATSAT yet. Try <code>WHATSAT &lt;client&gt; 10 5</code> in the console.
          </p>
        )
        : (
          <table class="table" data-testid="places-table">
            <thead>
              <tr>
                <th>Time</th>
                <th>Server</th>
                <th>Client</th>
                <th class="num">Radius</th>
                <th class="num">Bound</th>
                <th>Provider</th>
                <th>Status</th>
                <th class="num">Results</th>
                <th class="num">ms</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((e) =>
                e.kind === "whatsat" && (
                  <tr
                    key={e.id}
                    data-places-row={e.client}
                    class={e.status === "OK" || e.status === "ZERO_RESULTS" ? "" : "row-error"}
                  >
                    <td class="mono">{clock(e.t)}</td>
                    <td>{e.server}</td>
                    <td class="mono ellipsis" title={e.client}>{e.client}</td>
                    <td class="num">{e.radiusKm} km</td>
                    <td class="num">{e.bound}</td>
                    <td>
                      {e.provider}
                      {e.coalesced
                        ? <span class="chip" title="shared with an identical query">shared</span>
                        : null}
                    </td>
                    <td title={e.error ?? ""}>
                      <span
                        class={`status status-${
                          e.status === "OK" ? "ok" : e.status === "ZERO_RESULTS" ? "zero" : "bad"
                        }`}
                      >
                        {e.status}
                      </span>
                    </td>
                    <td class="num">{e.count}</td>
                    <td class="num">{millis(e.latencyMs)}</td>
                  </tr>
                )
              )}
            </tbody>
          </table>
        )}
    </div>
  );
}
