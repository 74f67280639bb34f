/** The HTML document shell: head, stylesheet, the embedded initial data and island scripts. */

import type { ComponentChildren } from "preact";
import type { Assets } from "../assets.ts";

const FAVICON = "data:image/svg+xml," +
  encodeURIComponent(
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><circle cx="16" cy="16" r="14" fill="#2f6fed"/><circle cx="10" cy="13" r="3" fill="#fff"/><circle cx="22" cy="13" r="3" fill="#fff"/><circle cx="16" cy="22" r="3" fill="#fff"/></svg>',
  );

export function Layout(
  { title, assets, initialJson, islands, children }: {
    title: string;
    assets: Assets;
    /** Already escaped for a script element (see `jsonForScript`). */
    initialJson: string;
    /** Island names whose scripts the page loads. */
    islands: string[];
    children: ComponentChildren;
  },
) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="color-scheme" content="light dark" />
        <meta name="referrer" content="no-referrer" />
        <title>{title}</title>
        <link rel="icon" href={FAVICON} />
        <link rel="stylesheet" href={assets.styleUrl} />
        {assets.chunks.map((u) => <link key={u} rel="modulepreload" href={u} />)}
      </head>
      <body>
        {children}
        <script
          id="herd-initial"
          type="application/json"
          dangerouslySetInnerHTML={{ __html: initialJson }}
        />
        {islands.map((name) =>
          assets.islands[name]
            ? <script key={name} type="module" src={assets.islands[name]} />
            : null
        )}
      </body>
    </html>
  );
}
