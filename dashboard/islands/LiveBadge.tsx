/** The header's live indicator: stream state, newest event id, Places provider. */

import { IS_BROWSER, lastId, status, useInitial, useSnapshot } from "./_live.ts";
import { formatCount } from "./_model.ts";

export default function LiveBadge() {
  const init = useInitial();
  const snap = useSnapshot();
  const st = IS_BROWSER ? status.value : "connecting";
  const id = IS_BROWSER ? lastId.value : init.lastId;
  const label = {
    connecting: "connecting",
    live: "live",
    reconnecting: "reconnecting",
    offline: "offline",
  }[st];
  return (
    <div class="live-badge" data-status={st}>
      <span class={`dot dot-${st}`} aria-hidden="true" />
      <span class="live-label" data-testid="live-status">{label}</span>
      <span class="muted" title="newest event id">#{formatCount(id)}</span>
      <span class="chip" title="Places provider">places: {snap.places || "?"}</span>
    </div>
  );
}
