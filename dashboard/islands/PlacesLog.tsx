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
                <th>Time · server</th>
                <th>Client</th>
                <th class="num">Query</th>
                <th>Status</th>
                <th class="num">Results</th>
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
                    {/* Two facts a cell, stacked: the panel is narrow beside the feed. */}
                    <td>
                      <span class="mono">{clock(e.t)}</span>
                      <span class="cell-sub">{e.server}</span>
                    </td>
                    <td class="mono ellipsis" title={e.client}>{e.client}</td>
                    <td class="num nowrap">
                      {e.radiusKm} km<span class="cell-sub">≤ {e.bound}</span>
                    </td>
                    <td title={e.error ?? ""}>
                      <span
                        class={`status status-${
                          e.status === "OK" ? "ok" : e.status === "ZERO_RESULTS" ? "zero" : "bad"
                        }`}
                      >
                        {e.status}
                      </span>
                      <span class="cell-sub">
                        {e.provider}
                        {e.coalesced
                          ? <span class="chip" title="shared with an identical query">shared</span>
                          : null}
                      </span>
                    </td>
                    <td class="num nowrap">
                      {e.count}
                      <span class="cell-sub">{millis(e.latencyMs)} ms</span>
                    </td>
                  </tr>
                )
              )}
            </tbody>
          </table>
        )}
    </div>
  );
}
