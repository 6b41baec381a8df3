// Where a run's time went, once it has ended: GetExecution's node trace drawn as a waterfall
// (SVG, one bar per node attempt placed by its start and end from the run's start, on a time
// axis) and its profile summed up (queue wait, nodes, engine, provider, event log).
//
// A bar's shaded end is the attempt's provider time (model, database, HTTP calls); the darker
// start of that shade, a streamed model call's wait for its first token. Nodes call their
// provider last, so the shade is drawn at the end of the bar.

import { api } from '../lib/api.js';
import { $, cssToken, h, svg, truncate } from '../lib/dom.js';
import { formatMs } from '../lib/format.js';
import { state } from '../lib/state.js';

const CHART = { width: 1000, labelWidth: 170, valueWidth: 80, axisHeight: 26, rowHeight: 24, barHeight: 14 };
const TRACK = { x: CHART.labelWidth, width: CHART.width - CHART.labelWidth - CHART.valueWidth };
const SUMMARY = [
  ['queue_wait_ms', 'queue wait', 'From the request to its first event: waiting for a worker'],
  ['wall_ms', 'wall', 'First event to last'],
  ['nodes_ms', 'nodes', 'Wall time with at least one node attempt running'],
  ['engine_ms', 'engine', 'The rest of the wall time: scheduling, state, outputs between nodes'],
  ['provider_ms', 'provider', 'Model, database and HTTP calls, summed over attempts'],
  ['event_log_ms', 'event log', 'Storing the run’s events (batched, beside the run)'],
];

export function clearWaterfall() {
  $('run-waterfall').hidden = true;
  $('waterfall-chart').replaceChildren();
  $('profile-summary').replaceChildren();
  $('waterfall-note').hidden = true;
}

/** Reads the run's record (GetExecution) and draws it, unless another run took the panel. */
export async function loadWaterfall(run) {
  if (!run.execution) return;
  let execution;
  try {
    execution = await (await api(`/v1/${run.execution}`)).json();
  } catch (error) {
    if (state.run !== run) return;
    $('waterfall-note').textContent = `The run's timing could not be read: ${error.message}`;
    $('waterfall-note').hidden = false;
    $('run-waterfall').hidden = false;
    return;
  }
  if (state.run === run) drawWaterfall(execution);
}

export function drawWaterfall(execution) {
  $('profile-summary').replaceChildren(...summaryItems(execution.profile ?? {}));
  const origin = isoMs(execution.start_time);
  const attempts = Number.isNaN(origin) ? [] : attemptsOf(execution); // never started: no axis
  $('waterfall-chart').replaceChildren(...(attempts.length ? [chart(execution, attempts, origin)] : []));
  $('waterfall-note').textContent = attempts.length ? '' : 'No node ran.';
  $('waterfall-note').hidden = attempts.length > 0;
  $('run-waterfall').hidden = false;
}

function chart(execution, attempts, origin) {
  const end = Math.max(isoMs(execution.end_time) || 0, ...attempts.map((item) => item.end), origin + 1);
  const span = end - origin;
  const height = CHART.axisHeight + attempts.length * CHART.rowHeight + 6;
  return svg('svg', {
    class: 'waterfall-svg', 'data-testid': 'waterfall', viewBox: `0 0 ${CHART.width} ${height}`,
    width: CHART.width, height, role: 'img', 'aria-label': 'Node attempts on a time axis',
  }, axis(span, height), ...attempts.map((item, row) => bar(item, row, origin, span)));
}

/** Every attempt of every node, earliest first; one that never ended ends with the run. */
function attemptsOf(execution) {
  const runEnd = isoMs(execution.end_time);
  const items = [];
  for (const node of execution.trace ?? []) {
    const several = (node.attempts ?? []).length > 1;
    for (const attempt of node.attempts ?? []) {
      const start = isoMs(attempt.start_time);
      if (Number.isNaN(start)) continue;
      const ended = isoMs(attempt.end_time);
      items.push({
        node: node.node_id, type: node.node_type, attempt: Number(attempt.attempt) || 1, several,
        status: attempt.status, start, end: Number.isNaN(ended) ? Math.max(runEnd || start, start) : ended,
        provider: Number(attempt.provider_ms) || 0, firstToken: Number(attempt.provider_first_token_ms) || 0,
        duration: Number(attempt.duration_ms) || 0,
      });
    }
  }
  return items.sort((a, b) => a.start - b.start);
}

function bar(item, row, origin, span) {
  const scale = TRACK.width / span;
  const y = CHART.axisHeight + row * CHART.rowHeight;
  const from = Math.max(item.start, origin); // another replica's clock may differ a little
  const x = TRACK.x + (from - origin) * scale;
  const width = Math.max(1.5, (item.end - from) * scale);
  const provider = Math.min(width, item.provider * scale);
  const firstToken = Math.min(provider, item.firstToken * scale);
  const barY = y + (CHART.rowHeight - CHART.barHeight) / 2;
  const label = item.several ? `${item.node} #${item.attempt}` : item.node;
  const elapsed = item.end - item.start;
  return svg('g', {
    class: `wf-row status-${cssToken(item.status)}`, 'data-testid': 'waterfall-bar',
    'data-node-id': item.node, 'data-attempt': item.attempt, 'data-status': item.status,
    'data-start-ms': round(item.start - origin), 'data-end-ms': round(item.end - origin),
    'data-duration-ms': round(elapsed), 'data-provider-ms': round(item.provider),
  },
  svg('title', { text: barTitle(item, elapsed) }),
  svg('text', { class: 'wf-label', x: CHART.labelWidth - 10, y: y + CHART.rowHeight / 2 + 4, 'text-anchor': 'end', text: truncate(label, 20) }),
  svg('rect', { class: 'wf-bar', x, y: barY, width, height: CHART.barHeight, rx: 2 }),
  provider > 0 ? svg('rect', { class: 'wf-provider', x: x + width - provider, y: barY, width: provider, height: CHART.barHeight }) : null,
  firstToken > 0 ? svg('rect', { class: 'wf-first-token', x: x + width - provider, y: barY, width: firstToken, height: CHART.barHeight }) : null,
  svg('text', { class: 'wf-value', x: Math.min(x + width + 6, CHART.width - CHART.valueWidth + 6), y: y + CHART.rowHeight / 2 + 4, text: formatMs(elapsed) }));
}

function barTitle(item, elapsed) {
  const parts = [`${item.node} (${item.type}) · attempt ${item.attempt} · ${item.status}`, formatMs(elapsed)];
  if (item.provider) parts.push(`provider ${formatMs(item.provider)}`);
  if (item.firstToken) parts.push(`first token after ${formatMs(item.firstToken)}`);
  return parts.join('\n');
}

/** Grid lines and labels at a round step (1, 2 or 5 × 10ⁿ ms), three to six across. */
function axis(span, height) {
  const rough = span / 5;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) ?? rough;
  const ticks = [];
  for (let at = 0; at <= span + step / 1000; at += step) {
    const x = TRACK.x + (at / span) * TRACK.width;
    ticks.push(svg('line', { class: 'wf-grid', x1: x, x2: x, y1: CHART.axisHeight - 6, y2: height }),
      svg('text', { class: 'wf-tick', x, y: CHART.axisHeight - 10, 'text-anchor': 'middle', text: tickLabel(at, step) }));
  }
  return svg('g', { class: 'wf-axis', 'data-testid': 'waterfall-axis' }, ...ticks);
}

function tickLabel(ms, step) {
  if (ms === 0) return '0';
  if (step >= 1000) return `${Number((ms / 1000).toFixed(step >= 10_000 ? 0 : 1))} s`;
  return `${Number(ms.toFixed(step >= 1 ? 0 : 2))} ms`;
}

function summaryItems(profile) {
  return SUMMARY.map(([key, label, title]) => {
    const ms = Number(profile[key] ?? 0);
    return h('li', { class: `profile-item profile-${cssToken(key)}`, 'data-testid': `profile-${cssToken(key.replace(/_ms$/, ''))}`, 'data-ms': round(ms), title },
      h('span', { class: 'profile-label', text: label }), h('span', { class: 'profile-value', text: formatMs(ms) }));
  });
}

/** An RFC 3339 time (protobuf JSON: up to nine fractional digits, `Z`) in ms, keeping µs. */
function isoMs(text) {
  const match = /^(.+?)(?:\.(\d+))?Z$/.exec(String(text ?? ''));
  if (!match) return Number.NaN;
  return Date.parse(`${match[1]}Z`) + (match[2] ? Number(`0.${match[2]}`) * 1000 : 0);
}

function round(ms) {
  return Math.round(ms * 1000) / 1000;
}
