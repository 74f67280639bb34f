/**
 * An event-loop lag sampler to preload into a herd (or any Deno program) when looking for
 * stalls of its JavaScript thread:
 *
 *     LAG_OUT=/tmp/lag.txt deno run -A --preload bench/lag.js main.ts start ...
 *     deno run -A bench/paired.ts ... --b-deno-flags="--preload bench/lag.js"
 *
 * A 1 ms interval timer notes every gap between two of its ticks longer than `LAG_MS` (default
 * 4 ms) as `LAG <wall ms when the gap began> <gap ms>`, after a first line `ORIGIN <wall ms>`
 * (`performance.timeOrigin`, the zero of `--trace-gc`'s times). Lines are written once a second.
 * Compare the gaps' times with the slow requests of a load generator and with GC events: a gap
 * is time the thread did not get back to its timers (a long synchronous step, a GC pause, or the
 * thread off the CPU). The timers are unref'd: they keep nothing alive. The sampler costs the
 * thread ~1,000 wake-ups a second; use it to find stalls, not to measure throughput.
 *
 * @module
 */

const out = Deno.env.get("LAG_OUT") ?? "lag.txt";
const lagMs = Number(Deno.env.get("LAG_MS") ?? "4");
const file = Deno.openSync(out, { write: true, create: true, truncate: true });
const encoder = new TextEncoder();
file.writeSync(encoder.encode(`ORIGIN ${performance.timeOrigin}\n`));
let last = performance.now();
let pending = "";
Deno.unrefTimer(setInterval(() => {
  const now = performance.now();
  if (now - last > lagMs) {
    pending += `LAG ${(performance.timeOrigin + last).toFixed(3)} ${(now - last).toFixed(3)}\n`;
  }
  last = now;
}, 1));
Deno.unrefTimer(setInterval(() => {
  if (pending === "") return;
  file.writeSync(encoder.encode(pending));
  pending = "";
}, 1000));
