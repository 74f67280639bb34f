/**
 * Reading a Prometheus text exposition in tests: the whole text must parse with a real
 * Prometheus text parser (npm parse-prometheus-text-format, which throws on a malformed line),
 * then samples are looked up by name and labels, in any label order.
 *
 * @module
 */

// Test-only package: kept out of deno.json's runtime import map.
// deno-lint-ignore no-import-prefix
import parsePrometheusTextFormat from "npm:parse-prometheus-text-format@^1.1.1";

/** One sample line: name, labels, value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A parsed exposition. */
export interface Exposition {
  /** Family name → type (`COUNTER`, `GAUGE`, `HISTOGRAM`, ...), from the parser. */
  types: Map<string, string>;
  samples: Sample[];
  /** The value of the one sample with this name and exactly these labels; undefined if none. */
  value(name: string, labels?: Record<string, string>): number | undefined;
  /** Every sample of `name` whose labels include `labels`. */
  all(name: string, labels?: Record<string, string>): Sample[];
}

const SAMPLE = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/;
const LABEL = /([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)",?/y;

/**
 * Parses `text`; throws when the parser rejects it or a sample precedes its family's TYPE.
 *
 * @example
 * ```ts
 * declare const url: string;
 * parseExposition(await (await fetch(url)).text()).value("herd_records", { server: "Hill" });
 * ```
 */
export function parseExposition(text: string): Exposition {
  const families = parsePrometheusTextFormat(text) as { name: string; type: string }[];
  const types = new Map(families.map((f) => [f.name, f.type]));
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      LABEL.lastIndex = 0;
      while (LABEL.lastIndex < m[2].length) {
        const l = LABEL.exec(m[2]);
        if (!l) throw new Error(`bad labels: ${line}`);
        labels[l[1]] = l[2].replace(/\\n/g, "\n").replace(/\\(["\\])/g, "$1");
      }
    }
    const name = m[1];
    const base = name.replace(/_(bucket|sum|count)$/, "");
    if (!types.has(name) && types.get(base) !== "HISTOGRAM" && types.get(base) !== "SUMMARY") {
      throw new Error(`sample without a family: ${line}`);
    }
    samples.push({ name, labels, value: Number(m[3].replace(/^\+?Inf$/, "Infinity")) });
  }
  const matches = (s: Sample, labels: Record<string, string>) =>
    Object.entries(labels).every(([k, v]) => s.labels[k] === v);
  return {
    types,
    samples,
    value(name, labels = {}) {
      const found = samples.filter((s) =>
        s.name === name && matches(s, labels) &&
        Object.keys(s.labels).length === Object.keys(labels).length
      );
      if (found.length > 1) throw new Error(`${found.length} samples of ${name}`);
      return found[0]?.value;
    },
    all(name, labels = {}) {
      return samples.filter((s) => s.name === name && matches(s, labels));
    },
  };
}
