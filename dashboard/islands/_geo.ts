/**
 * The map's geography: a fixed Natural Earth projection of the whole world into a 960×500 box,
 * and the world-atlas topology turned into SVG path data. d3-geo and topojson-client ship no
 * types; the few functions used are typed here.
 *
 * @module
 */

import * as d3 from "d3-geo";
import * as topojson from "topojson-client";

/** The map's SVG view box. */
export const MAP_W = 960;
export const MAP_H = 500;

/** A cluster grid cell's side at zoom level 0, in map units (level z: CELL / 2^z). */
export const CELL = 32;
/** Deepest zoom level (scale 2^16): finer than any two distinct bulk-loaded clients. */
export const MAX_ZOOM = 16;
/** A cell holding at most this many clients is sent as its clients, not as a group. */
export const SPLIT = 8;

interface Projection {
  (p: [number, number]): [number, number] | null;
  fitExtent(extent: [[number, number], [number, number]], object: unknown): Projection;
}
interface PathGen {
  (object: unknown): string | null;
}
interface D3Geo {
  geoNaturalEarth1(): Projection;
  geoPath(projection: Projection): PathGen;
  geoGraticule10(): unknown;
}
interface Topo {
  feature(topology: unknown, object: unknown): unknown;
  mesh(topology: unknown, object: unknown, filter?: (a: unknown, b: unknown) => boolean): unknown;
}

const geo = d3 as unknown as D3Geo;
const topo = topojson as unknown as Topo;

const projection = geo.geoNaturalEarth1().fitExtent([[6, 6], [MAP_W - 6, MAP_H - 6]], {
  type: "Sphere",
});
const path = geo.geoPath(projection);

/** Projects a longitude/latitude to map coordinates (null when off the map or invalid). */
export function project(lng: number, lat: number): [number, number] | null {
  const p = projectExact(lng, lat);
  return p && [Math.round(p[0] * 10) / 10, Math.round(p[1] * 10) / 10];
}

/** {@linkcode project} unrounded, for zooming in far (0.1 unit is ~4 km). */
export function projectExact(lng: number, lat: number): [number, number] | null {
  if (!Number.isFinite(lat) || !Number.isFinite(lng)) return null;
  const p = projection([lng, lat]);
  if (!p || !Number.isFinite(p[0]) || !Number.isFinite(p[1])) return null;
  return p;
}

/** The outline of the globe and the 10° graticule (no data needed: drawn at once). */
export const SPHERE_PATH = path({ type: "Sphere" }) ?? "";
export const GRATICULE_PATH = path(geo.geoGraticule10()) ?? "";

/** Path data for the countries (land) and their shared borders, from a world-atlas topology. */
export function worldPaths(topology: unknown): { land: string; borders: string } {
  const objects = (topology as { objects: Record<string, unknown> }).objects;
  const countries = objects.countries ?? objects.land;
  return {
    land: path(topo.feature(topology, countries)) ?? "",
    borders: path(topo.mesh(topology, countries, (a, b) => a !== b)) ?? "",
  };
}
