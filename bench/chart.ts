/**
 * Benchmark chart as a dependency-free SVG: two panels side by side, throughput and p99 latency
 * against connections (log2 scale, so 1, 32 and 256 are spread out). One line per series. A panel
 * switches to a log y axis when its values span more than 20x: the echo floor and the asyncio
 * herd differ by two orders of magnitude, and a linear axis would flatten the slow one to zero.
 *
 * CLI: `deno run -R bench/chart.ts bench/results/latest.json > chart.svg` (reads the `chart`
 * field that bench/run.ts writes).
 *
 * @module
 */

/** One measurement of one series. */
export interface ChartPoint {
  connections: number;
  /** Requests per second. */
  throughput: number;
  /** 99th percentile latency in ms. */
  p99: number;
}

/** A named line (e.g. "echo baseline", "our herd", "asyncio herd"). */
export interface ChartSeries {
  name: string;
  points: ChartPoint[];
}

/** Everything {@linkcode renderChart} draws. */
export interface ChartData {
  title?: string;
  series: ChartSeries[];
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
const PANEL_W = 420;
const PANEL_H = 280;
const M = { left: 70, right: 20, top: 70, bottom: 50 };

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(
    /"/g,
    "&quot;",
  );
}

/** 1-2-5 rounding up, so the linear axis ends on a readable number. */
function niceCeil(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function fmtNum(v: number): string {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toPrecision(3)}`;
}

interface Panel {
  title: string;
  y: (p: ChartPoint) => number;
  log: boolean;
  unit: string;
}

/**
 * Renders the chart. Pure: same data, same SVG string. Points with a non-finite or (on the log
 * panel) non-positive value are skipped rather than drawn at a wrong place.
 */
export function renderChart(data: ChartData): string {
  const xsAll = [...new Set(data.series.flatMap((s) => s.points.map((p) => p.connections)))]
    .filter((x) => x > 0).sort((a, b) => a - b);
  const xs = xsAll.length > 0 ? xsAll : [1];
  const lx0 = Math.log2(xs[0]);
  const lx1 = Math.max(Math.log2(xs[xs.length - 1]), lx0 + 1);
  const plotW = PANEL_W - M.left - M.right;
  const plotH = PANEL_H - M.top - M.bottom;
  const xPos = (c: number) => M.left + ((Math.log2(c) - lx0) / (lx1 - lx0)) * plotW;

  // A log axis as soon as the series differ by more than 20x, or the slow one is a flat line at 0.
  const spread = (f: (p: ChartPoint) => number) => {
    const v = data.series.flatMap((s) => s.points.map(f)).filter((x) =>
      Number.isFinite(x) && x > 0
    );
    return v.length > 0 && Math.max(...v) / Math.min(...v) > 20;
  };
  const panels: Panel[] = [
    {
      title: "Throughput",
      y: (p) => p.throughput,
      log: spread((p) => p.throughput),
      unit: "req/s",
    },
    { title: "p99 latency", y: (p) => p.p99, log: spread((p) => p.p99), unit: "ms" },
  ];
  const out: string[] = [];
  const width = PANEL_W * panels.length;
  const legendRows = Math.ceil(data.series.length / 3);
  const height = PANEL_H + legendRows * 18;
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
  );
  if (data.title) {
    out.push(
      `<text x="${width / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">${
        esc(data.title)
      }</text>`,
    );
  }
  data.series.forEach((s, i) => {
    const lx = 20 + (i % 3) * (width / 3);
    const ly = 34 + Math.floor(i / 3) * 18;
    const color = COLORS[i % COLORS.length];
    out.push(
      `<line x1="${lx}" y1="${ly}" x2="${lx + 20}" y2="${ly}" stroke="${color}" stroke-width="2"/>`,
      `<circle cx="${lx + 10}" cy="${ly}" r="3" fill="${color}"/>`,
      `<text x="${lx + 26}" y="${ly + 4}">${esc(s.name)}</text>`,
    );
  });

  panels.forEach((panel, pi) => {
    const ox = pi * PANEL_W;
    const oy = legendRows * 18;
    const vals = data.series.flatMap((s) => s.points.map(panel.y))
      .filter((v) => Number.isFinite(v) && (!panel.log || v > 0));
    let yPos: (v: number) => number;
    let ticks: number[];
    if (panel.log) {
      const lo = Math.floor(Math.log10(vals.length ? Math.min(...vals) : 0.1));
      const hi = Math.max(Math.ceil(Math.log10(vals.length ? Math.max(...vals) : 1)), lo + 1);
      yPos = (v) => M.top + plotH - ((Math.log10(v) - lo) / (hi - lo)) * plotH;
      ticks = Array.from({ length: hi - lo + 1 }, (_, k) => 10 ** (lo + k));
    } else {
      const top = niceCeil(vals.length ? Math.max(...vals) : 1);
      yPos = (v) => M.top + plotH - (v / top) * plotH;
      ticks = Array.from({ length: 6 }, (_, k) => (top * k) / 5);
    }
    out.push(`<g transform="translate(${ox},${oy})">`);
    out.push(
      `<text x="${M.left + plotW / 2}" y="${M.top - 12}" text-anchor="middle" font-size="12" ` +
        `font-weight="bold">${esc(panel.title)} (${panel.unit}${panel.log ? ", log" : ""})</text>`,
    );
    for (const t of ticks) {
      const y = yPos(t).toFixed(1);
      out.push(
        `<line x1="${M.left}" y1="${y}" x2="${M.left + plotW}" y2="${y}" stroke="#e5e5e5"/>`,
        `<text x="${M.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${
          fmtNum(t)
        }</text>`,
      );
    }
    for (const c of xs) {
      const x = xPos(c).toFixed(1);
      out.push(
        `<line x1="${x}" y1="${M.top}" x2="${x}" y2="${M.top + plotH}" stroke="#f0f0f0"/>`,
        `<text x="${x}" y="${M.top + plotH + 16}" text-anchor="middle">${c}</text>`,
      );
    }
    out.push(
      `<rect x="${M.left}" y="${M.top}" width="${plotW}" height="${plotH}" fill="none" ` +
        `stroke="#999"/>`,
      `<text x="${M.left + plotW / 2}" y="${M.top + plotH + 36}" text-anchor="middle">` +
        `connections</text>`,
    );
    data.series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      const pts = s.points
        .filter((p) => p.connections > 0)
        .filter((p) => Number.isFinite(panel.y(p)) && (!panel.log || panel.y(p) > 0))
        .sort((a, b) => a.connections - b.connections)
        .map((p) => [xPos(p.connections).toFixed(1), yPos(panel.y(p)).toFixed(1)] as const);
      if (pts.length > 1) {
        out.push(
          `<polyline fill="none" stroke="${color}" stroke-width="2" points="${
            pts.map(([x, y]) => `${x},${y}`).join(" ")
          }"/>`,
        );
      }
      for (const [x, y] of pts) out.push(`<circle cx="${x}" cy="${y}" r="3" fill="${color}"/>`);
    });
    out.push(`</g>`);
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

if (import.meta.main) {
  const file = Deno.args[0] ?? "bench/results/latest.json";
  const json = JSON.parse(await Deno.readTextFile(file));
  console.log(renderChart(json.chart ?? json));
}
