/**
 * The dashboard's files: the stylesheet and the island bundles that `deno task build` writes to
 * `static/build/` (with `manifest.json` naming them), served under `/static/`.
 *
 * @module
 */

import { toHex } from "../servers/text.ts";
import type { Context } from "hono";
import { extname, join, sep } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";

/** Where the static files live (dashboard/static/, whatever the working directory). */
export const STATIC_DIR = new URL("./static/", import.meta.url);

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
  return toHex(d.slice(0, 6));
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

/** The real path of each static dir, resolved once (a missing dir is retried next time). */
const realRoots = new Map<string, Promise<string>>();

function realRoot(staticDir: URL): Promise<string> {
  const key = staticDir.href;
  let root = realRoots.get(key);
  if (!root) {
    root = Deno.realPath(fromFileUrl(staticDir));
    root.catch(() => realRoots.delete(key));
    realRoots.set(key, root);
  }
  return root;
}

/**
 * The file a `/static/...` request path names, as a path under `root`, or null. The path is
 * split on `/` and each segment percent-decoded once; it is never parsed as a URL (a URL parser
 * takes `file:/etc/passwd` as absolute). Segments that are empty, start with a dot (`.`, `..`,
 * dotfiles) or hold a separator, backslash or control byte once decoded are refused.
 */
export function staticPath(root: string, rawPath: string): string | null {
  const rel = rawPath.replace(/^\/static\//, "");
  if (rel === rawPath || rel === "") return null;
  const parts: string[] = [];
  for (const seg of rel.split("/")) {
    let name: string;
    try {
      name = decodeURIComponent(seg);
    } catch {
      return null; // malformed escape
    }
    if (name === "" || name.startsWith(".") || /[\/\\\x00-\x1f\x7f]/.test(name)) return null;
    parts.push(name);
  }
  return join(root, ...parts);
}

/**
 * Serves `/static/<path>` from `staticDir`; never outside it. Only a regular file whose real path
 * (symlinks resolved) lies inside the real static dir is read: a symlink pointing out, a
 * directory, a FIFO (which would block the reader) or a device is a 404 like a missing file.
 */
export async function serveStatic(c: Context, staticDir: URL = STATIC_DIR): Promise<Response> {
  const notFound = () => c.json({ error: "not found" }, 404);
  // The raw path as sent (Hono's c.req.path is already decoded once).
  const url = c.req.url;
  const pathStart = url.indexOf("/", url.indexOf("//") + 2);
  const queryStart = url.indexOf("?", pathStart);
  const rawPath = url.slice(pathStart, queryStart < 0 ? undefined : queryStart);
  let body: Uint8Array;
  let real: string;
  try {
    const root = await realRoot(staticDir);
    const file = staticPath(root, rawPath);
    if (file === null) return notFound();
    real = await Deno.realPath(file);
    // The trailing separator keeps `static-other/` from passing as inside `static/`.
    if (!real.startsWith(root + sep)) return notFound();
    // stat before open: opening a FIFO would wait for a writer.
    if (!(await Deno.stat(real)).isFile) return notFound();
    body = await Deno.readFile(real);
  } catch {
    return notFound();
  }
  const ext = extname(real).toLowerCase();
  const immutable = c.req.query("v") !== undefined || rawPath.startsWith("/static/build/chunk-");
  return c.body(body as Uint8Array<ArrayBuffer>, 200, {
    "content-type": TYPES[ext] ?? "application/octet-stream",
    "cache-control": immutable ? "public, max-age=31536000, immutable" : "no-cache",
    "x-content-type-options": "nosniff",
  });
}
