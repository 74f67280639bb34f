/**
 * The dashboard's files: the stylesheet and the island bundles that `deno task build` writes to
 * `static/build/` (with `manifest.json` naming them), served under `/static/`.
 *
 * @module
 */

import type { Context } from "hono";

/** Where the static files live (beside this repo's `web/`, not the working directory). */
export const STATIC_DIR = new URL("../static/", import.meta.url);

/** What build.ts writes to `static/build/manifest.json`. */
export interface BuildManifest {
  /** Content hash of the whole build (cache buster). */
  version: string;
  /** Island name -> entry file name in static/build/. */
  islands: Record<string, string>;
  /** Shared chunks, for modulepreload. */
  chunks: string[];
  builtAt: string;
}

/** The URLs a page needs. */
export interface Assets {
  /** False when `deno task build` has not been run: the page is then server-rendered only. */
  built: boolean;
  /** Island name -> script URL. */
  islands: Record<string, string>;
  /** Shared chunk URLs. */
  chunks: string[];
  styleUrl: string;
}

async function shortHash(data: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>));
  return [...d.slice(0, 6)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Reads the build manifest and the stylesheet's hash. */
export async function loadAssets(staticDir: URL = STATIC_DIR): Promise<Assets> {
  let styleVersion = "0";
  try {
    styleVersion = await shortHash(await Deno.readFile(new URL("style.css", staticDir)));
  } catch { /* no stylesheet: the page still works */ }
  const styleUrl = `/static/style.css?v=${styleVersion}`;
  try {
    const m: BuildManifest = JSON.parse(
      await Deno.readTextFile(new URL("build/manifest.json", staticDir)),
    );
    const q = `?v=${m.version}`;
    return {
      built: true,
      islands: Object.fromEntries(
        Object.entries(m.islands).map(([k, f]) => [k, `/static/build/${f}${q}`]),
      ),
      chunks: m.chunks.map((f) => `/static/build/${f}`),
      styleUrl,
    };
  } catch {
    return { built: false, islands: {}, chunks: [], styleUrl };
  }
}

const TYPES: Record<string, string> = {
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2",
};

/** Serves `/static/<path>` from `staticDir`; never outside it. */
export async function serveStatic(c: Context, staticDir: URL = STATIC_DIR): Promise<Response> {
  const rel = decodeURIComponent(c.req.path.replace(/^\/static\//, ""));
  if (
    !rel || rel.split("/").some((p) => p === ".." || p === "." || p === "") || rel.includes("\\") ||
    rel.includes("\0")
  ) {
    return c.json({ error: "not found" }, 404);
  }
  const file = new URL(rel, staticDir);
  try {
    const body = await Deno.readFile(file);
    const ext = rel.slice(rel.lastIndexOf(".")).toLowerCase();
    const immutable = c.req.query("v") !== undefined || rel.startsWith("build/chunk-");
    return c.body(body, 200, {
      "content-type": TYPES[ext] ?? "application/octet-stream",
      "cache-control": immutable ? "public, max-age=31536000, immutable" : "no-cache",
      "x-content-type-options": "nosniff",
    });
  } catch {
    return c.json({ error: "not found" }, 404);
  }
}
