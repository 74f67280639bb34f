/**
 * The map's zoom and pan: `d3-zoom` on the map's SVG (wheel, drag, pinch, double-click), typed
 * here for the few calls used (the packages ship no types). Scale 1 shows the whole world;
 * 2^MAX_ZOOM is the deepest.
 *
 * @module
 */

import * as d3zoom from "d3-zoom";
import * as d3sel from "d3-selection";
import { MAP_H, MAP_W, MAX_ZOOM } from "./_geo.ts";

/** A zoom transform: screen = k · map + (x, y), in view-box units. */
export interface View {
  k: number;
  x: number;
  y: number;
}

interface ZoomEvent {
  transform: View;
}
interface ZoomBehavior {
  (selection: unknown): void;
  scaleExtent(e: [number, number]): ZoomBehavior;
  translateExtent(e: [[number, number], [number, number]]): ZoomBehavior;
  extent(e: [[number, number], [number, number]]): ZoomBehavior;
  on(type: string, fn: ((e: ZoomEvent) => void) | null): ZoomBehavior;
  transform(selection: unknown, t: unknown): void;
  scaleBy(selection: unknown, k: number): void;
}
interface Transform {
  translate(x: number, y: number): Transform;
  scale(k: number): Transform;
}
const zoomLib = d3zoom as unknown as { zoom(): ZoomBehavior; zoomIdentity: Transform };
const selLib = d3sel as unknown as { select(el: Element): unknown };

/** Zoom controls of one map element. */
export interface MapZoom {
  /** Scales around the view's centre. */
  scaleBy(k: number): void;
  /** Centres map point (mx, my) at scale k. */
  centre(mx: number, my: number, k: number): void;
  reset(): void;
  destroy(): void;
}

/** Attaches d3-zoom to `svg`; `onView` gets every new view. */
export function attachZoom(svg: SVGSVGElement, onView: (v: View) => void): MapZoom {
  const sel = selLib.select(svg);
  const behavior = zoomLib.zoom()
    .scaleExtent([1, 2 ** MAX_ZOOM])
    .extent([[0, 0], [MAP_W, MAP_H]])
    .translateExtent([[0, 0], [MAP_W, MAP_H]])
    .on("zoom", (e) => onView({ k: e.transform.k, x: e.transform.x, y: e.transform.y }));
  behavior(sel);
  const to = (k: number, mx: number, my: number) =>
    behavior.transform(
      sel,
      zoomLib.zoomIdentity.translate(MAP_W / 2, MAP_H / 2).scale(k).translate(-mx, -my),
    );
  return {
    scaleBy: (k) => behavior.scaleBy(sel, k),
    centre: (mx, my, k) => to(Math.min(2 ** MAX_ZOOM, Math.max(1, k)), mx, my),
    reset: () => behavior.transform(sel, zoomLib.zoomIdentity),
    destroy: () => behavior.on("zoom", null),
  };
}

/** The zoom level whose cluster cells suit scale k. */
export function levelOf(k: number): number {
  return Math.max(0, Math.min(MAX_ZOOM, Math.round(Math.log2(k))));
}

/** The map-unit box the view shows, widened by `margin` of its size on each side. */
export function viewBox(v: View, margin = 0.25): [number, number, number, number] {
  const w = MAP_W / v.k;
  const h = MAP_H / v.k;
  const x0 = -v.x / v.k;
  const y0 = -v.y / v.k;
  return [x0 - w * margin, y0 - h * margin, x0 + w * (1 + margin), y0 + h * (1 + margin)];
}
