// The dashboard's chart: runs per bucket as stacked bars by state (completed at the bottom, then
// failed, cancelled, active), drawn as inline SVG from GetStats's `buckets`; a count axis on the
// left, bucket times below. Each bar carries its counts (data-*) and a <title> for tooltips and
// screen readers; the whole chart an aria-label summing it up.

import { svg } from '../lib/dom.js';

export const STATES = ['completed', 'failed', 'cancelled', 'active'];
const CHART = { width: 1000, height: 240, left: 44, right: 10, top: 10, bottom: 28 };
const PLOT = {
  x: CHART.left,
  y: CHART.top,
  width: CHART.width - CHART.left - CHART.right,
  height: CHART.height - CHART.top - CHART.bottom,
};
const TIME_LABELS = 6;

/** The chart of `stats.buckets` (counts may arrive as strings: int64 in JSON). */
export function drawRunsChart(stats, { windowLabel }) {
  const buckets = (stats.buckets ?? []).map(bucketCounts);
  const widthMs = durationMs(stats.bucket_width);
  const highest = Math.max(1, ...buckets.map((bucket) => bucket.total));
  const scale = niceScale(highest);
  const slot = PLOT.width / Math.max(1, buckets.length);
  const gap = Math.min(2, slot * 0.15);
  const totals = Object.fromEntries(STATES.map((state) => [state, buckets.reduce((sum, b) => sum + b[state], 0)]));
  const total = STATES.reduce((sum, state) => sum + totals[state], 0);
  const label = `Runs per ${formatWidth(widthMs)} over the last ${windowLabel}: ${total} runs, `
    + STATES.map((state) => `${totals[state]} ${state}`).join(', ');
  return svg('svg', {
    class: 'stats-chart', 'data-testid': 'stats-chart', viewBox: `0 0 ${CHART.width} ${CHART.height}`,
    width: CHART.width, height: CHART.height, role: 'img', 'aria-label': label,
    'data-max': scale.max,
  },
  svg('title', { text: label }),
  countAxis(scale),
  timeAxis(buckets, slot, widthMs),
  ...buckets.map((bucket, index) => bar(bucket, index, slot, gap, scale.max, widthMs)));
}

function bucketCounts(bucket) {
  const counts = Object.fromEntries(STATES.map((state) => [state, Number(bucket[state] ?? 0)]));
  return { start: String(bucket.start_time ?? ''), ...counts, total: STATES.reduce((sum, s) => sum + counts[s], 0) };
}

function bar(bucket, index, slot, gap, max, widthMs) {
  const x = PLOT.x + index * slot + gap / 2;
  const width = Math.max(0.5, slot - gap);
  let bottom = PLOT.y + PLOT.height;
  const rects = [];
  for (const state of STATES) {
    if (!bucket[state]) continue;
    const height = (bucket[state] / max) * PLOT.height;
    bottom -= height;
    rects.push(svg('rect', {
      class: `bar bar-${state}`, 'data-state': state, x: round(x), y: round(bottom), width: round(width), height: round(height),
    }));
  }
  const when = timeLabel(Date.parse(bucket.start), widthMs);
  const counts = STATES.filter((state) => bucket[state]).map((state) => `${bucket[state]} ${state}`).join(', ');
  return svg('g', {
    class: 'chart-bucket', 'data-testid': 'chart-bucket', 'data-start': bucket.start, 'data-total': bucket.total,
    ...Object.fromEntries(STATES.map((state) => [`data-${state}`, bucket[state]])),
  },
  svg('title', { text: `${when}: ${counts || 'no runs'}` }),
  // A transparent hit area over the whole slot, so that empty and thin buckets have a tooltip.
  svg('rect', { class: 'bar-hit', x: round(PLOT.x + index * slot), y: PLOT.y, width: round(slot), height: PLOT.height }),
  ...rects);
}

function countAxis(scale) {
  const group = svg('g', { class: 'chart-axis', 'aria-hidden': 'true' });
  for (let value = 0; value <= scale.max; value += scale.step) {
    const y = round(PLOT.y + PLOT.height - (value / scale.max) * PLOT.height);
    group.append(
      svg('line', { class: value ? 'chart-grid' : 'chart-baseline', x1: PLOT.x, x2: PLOT.x + PLOT.width, y1: y, y2: y }),
      svg('text', { class: 'chart-tick', x: PLOT.x - 6, y: y + 4, 'text-anchor': 'end', text: String(value) }),
    );
  }
  return group;
}

function timeAxis(buckets, slot, widthMs) {
  const group = svg('g', { class: 'chart-axis', 'aria-hidden': 'true' });
  if (!buckets.length) return group;
  const every = Math.max(1, Math.ceil(buckets.length / TIME_LABELS));
  buckets.forEach((bucket, index) => {
    if (index % every) return;
    const x = round(PLOT.x + index * slot);
    group.append(svg('text', {
      class: 'chart-tick', x, y: CHART.height - 8, 'text-anchor': 'start', text: timeLabel(Date.parse(bucket.start), widthMs),
    }));
  });
  return group;
}

/** An axis from 0 to a round maximum with a handful of whole-number steps. */
function niceScale(highest) {
  const rough = highest / 4;
  const magnitude = 10 ** Math.floor(Math.log10(Math.max(1, rough)));
  const step = Math.max(1, [1, 2, 5, 10].map((f) => f * magnitude).find((s) => s >= rough) ?? 10 * magnitude);
  return { step, max: Math.ceil(highest / step) * step };
}

export function durationMs(value) {
  const match = /^(-?\d+(?:\.\d+)?)s$/.exec(String(value ?? ''));
  return match ? Number(match[1]) * 1000 : 0;
}

export function formatWidth(ms) {
  if (ms >= 86_400_000 && ms % 86_400_000 === 0) return plural(ms / 86_400_000, 'day');
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return plural(ms / 3_600_000, 'hour');
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${Number((ms / 1000).toFixed(3))} s`;
}

function plural(count, unit) {
  return count === 1 ? unit : `${count} ${unit}s`;
}

function timeLabel(time, widthMs) {
  if (Number.isNaN(time)) return '';
  const date = new Date(time);
  const clock = date.toLocaleTimeString([], { hour12: false, hour: '2-digit', minute: '2-digit', second: widthMs < 60_000 ? '2-digit' : undefined });
  return widthMs >= 3_600_000 ? `${date.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${clock}` : clock;
}

function round(value) {
  return Math.round(value * 100) / 100;
}
