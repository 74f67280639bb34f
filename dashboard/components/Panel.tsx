/** A titled card on the dashboard grid (server-only markup). */

import type { ComponentChildren } from "preact";

export function Panel(
  { title, hint, id, class: cls, children }: {
    title: string;
    hint?: string;
    id?: string;
    class?: string;
    children: ComponentChildren;
  },
) {
  return (
    <section
      class={cls ? `panel ${cls}` : "panel"}
      id={id}
      aria-labelledby={id ? `${id}-title` : undefined}
    >
      <header class="panel-head">
        <h2 id={id ? `${id}-title` : undefined}>{title}</h2>
        {hint && <span class="muted small">{hint}</span>}
      </header>
      <div class="panel-body">{children}</div>
    </section>
  );
}
