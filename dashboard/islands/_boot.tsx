/**
 * Browser entry glue: each island's bundle calls {@linkcode boot} with its component. It starts
 * the shared live store (once per page) from the JSON the server embedded, then hydrates every
 * element the server marked `data-island="<name>"` with the props in its `data-props`.
 *
 * @module
 */

import { type ComponentType, hydrate } from "preact";
import type { InitialData } from "../types.ts";
import { InitialContext, start } from "./_live.ts";

let initial: InitialData | undefined;

/** The page's embedded initial data (parsed once). */
export function pageInitial(): InitialData {
  if (!initial) {
    const el = document.getElementById("herd-initial");
    initial = JSON.parse(el?.textContent ?? "null") as InitialData;
  }
  return initial;
}

/** Hydrates every server-rendered instance of one island. */
// deno-lint-ignore no-explicit-any
export function boot(name: string, Island: ComponentType<any>): void {
  const init = pageInitial();
  start(init);
  for (const el of document.querySelectorAll<HTMLElement>(`[data-island="${name}"]`)) {
    const props = JSON.parse(el.dataset.props ?? "{}");
    hydrate(
      <InitialContext.Provider value={init}>
        <Island {...props} />
      </InitialContext.Provider>,
      el,
    );
    el.dataset.hydrated = "true";
  }
}
