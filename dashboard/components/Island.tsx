/**
 * Server-side wrapper of an island: renders the component into a marked element that the
 * island's bundle hydrates in the browser (`islands/_boot.tsx`), with its props as JSON.
 */

import type { ComponentType } from "preact";
import { InitialContext } from "../islands/_live.ts";
import type { InitialData } from "../types.ts";

export interface IslandProps<P> {
  name: string;
  // deno-lint-ignore no-explicit-any
  component: ComponentType<any>;
  props?: P;
  init: InitialData;
  class?: string;
}

export function Island<P extends Record<string, unknown>>(
  { name, component: C, props, init, class: cls }: IslandProps<P>,
) {
  return (
    <div
      class={cls ? `island ${cls}` : "island"}
      data-island={name}
      data-props={JSON.stringify(props ?? {})}
    >
      <InitialContext.Provider value={init}>
        <C {...(props ?? {})} />
      </InitialContext.Provider>
    </div>
  );
}
