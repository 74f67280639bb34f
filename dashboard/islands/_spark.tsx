/**
 * A sparkline: one series as a small SVG polyline, scaled to its own maximum, with the newest
 * value and the maximum in its label (screen readers get the numbers, not the picture).
 *
 * @module
 */

import { formatCount } from "./_model.ts";

const W = 90;
const H = 22;

export function Sparkline(
  { values, label, testid }: { values: readonly number[]; label: string; testid?: string },
) {
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? W / (values.length - 1) : W;
  const points = values
    .map((v, i) =>
      `${Math.round(i * step * 10) / 10},${Math.round((H - 1 - (v / max) * (H - 2)) * 10) / 10}`
    )
    .join(" ");
  const last = values.length > 0 ? values[values.length - 1] : 0;
  return (
    <svg
      class="spark"
      viewBox={`0 0 ${W} ${H}`}
      width={W}
      height={H}
      role="img"
      aria-label={`${label}: now ${formatCount(last)}, peak ${formatCount(max)}`}
      data-testid={testid}
    >
      <title>{`${label}: now ${formatCount(last)}, peak ${formatCount(max)}`}</title>
      {values.length > 1 && <polyline points={points} />}
    </svg>
  );
}
