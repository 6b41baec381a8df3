// The dashboard (`#/dashboard`): the tenant's runs over a window, as GetStats (`GET /v1/stats`)
// computes them from the stored runs: tiles (runs, error rate, p50/p95 duration, estimated
// cost, queue depth), runs per bucket by state (views/stats-chart.js), tokens and cost by model,
// the dependencies' health, the top error groups and the latest failures, each linked to its
// run's view. Read again every REFRESH_MS while shown; a newer answer always wins.

import { api } from '../lib/api.js';
import { $, cssToken, h, truncate } from '../lib/dom.js';
import { formatMs, fullTime, relativeTime } from '../lib/format.js';
import { executionHref } from '../lib/routes.js';
import { hasCredential } from '../lib/session.js';
import { drawRunsChart, durationMs, formatWidth, STATES } from './stats-chart.js';

const REFRESH_MS = 5_000;
const WINDOWS = [
  { value: '900s', label: '15 min', buckets: 30 },
  { value: '3600s', label: '1 hour', buckets: 60 },
  { value: '86400s', label: '24 hours', buckets: 96 },
  { value: '604800s', label: '7 days', buckets: 168 },
];
const DEFAULT_WINDOW = '3600s';

const board = { built: false, shown: false, timer: null, generation: 0, window: DEFAULT_WINDOW };

export function showDashboard() {
  if (!board.built) build();
  board.shown = true;
  clearInterval(board.timer);
  board.timer = setInterval(() => { if (!document.hidden) load(); }, REFRESH_MS);
  load();
}

export function hideDashboard() {
  board.shown = false;
  clearInterval(board.timer);
  board.timer = null;
  board.generation += 1; // an answer still on its way is dropped
}

function build() {
  board.built = true;
  const select = h('select', { id: 'dashboard-window', 'data-testid': 'dashboard-window' },
    ...WINDOWS.map((w) => h('option', { value: w.value, text: w.label, selected: w.value === board.window })));
  select.addEventListener('change', () => {
    board.window = select.value;
    load();
  });
  $('dashboard-view').replaceChildren(
    h('div', { class: 'card dashboard-head' },
      h('h1', { id: 'dashboard-title', text: 'Dashboard' }),
      h('label', { for: 'dashboard-window', class: 'dashboard-window-label', text: 'Window' }), select,
      h('span', { id: 'dashboard-updated', class: 'muted dashboard-updated', 'data-testid': 'dashboard-updated', 'aria-live': 'polite' })),
    h('p', { id: 'dashboard-message', class: 'dashboard-message', 'data-testid': 'dashboard-message', role: 'status', hidden: true }),
    h('section', { class: 'tiles-section', 'aria-labelledby': 'tiles-title' },
      h('h2', { id: 'tiles-title', class: 'visually-hidden', text: 'Summary' }),
      h('ul', { id: 'dashboard-tiles', class: 'tiles' })),
    section('chart', 'Runs by state', h('div', { id: 'dashboard-chart', class: 'chart-wrap' }),
      h('ul', { class: 'legend chart-legend', 'aria-label': 'Bar colours' },
        ...STATES.map((state) => h('li', { class: `chart-key-${state}`, text: state })))),
    h('div', { class: 'dashboard-grid' },
      section('models', 'Tokens and cost by model', table('models', [
        'Provider', 'Model', ['Calls', 'num'], ['Input tokens', 'num'], ['Output tokens', 'num'],
        ['Cached tokens', 'num'], ['Estimated cost', 'num']])),
      section('dependencies', 'Dependencies', h('ul', { id: 'dashboard-dependencies', class: 'dependency-list' })),
      section('errors', 'Top error groups', table('errors', [
        'Code', 'Node type', 'Message', ['Occurrences', 'num'], ['Runs ended', 'num'], 'Last seen'])),
      section('failures', 'Recent failures', table('failures', [
        'Run', 'Workflow', 'Error', 'Created', ['Duration', 'num']]))));
}

/** A card headed `title` (h2), holding `content`; `aside` goes at the head's end. */
function section(name, title, content, aside = null) {
  const head = h('div', { class: 'card-head' }, h('h2', { id: `${name}-title`, text: title }), aside);
  return h('section', { class: `card dashboard-${name}`, 'aria-labelledby': `${name}-title` }, head, content);
}

function table(name, columns) {
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'node-table stats-table', 'data-testid': `${name}-table` },
      h('thead', {}, h('tr', {}, ...columns.map((column) => {
        const [text, kind] = Array.isArray(column) ? column : [column, ''];
        return h('th', { scope: 'col', class: kind || null, text });
      }))),
      h('tbody', { id: `dashboard-${name}` })),
    h('p', { id: `dashboard-${name}-empty`, class: 'list-message', hidden: true }));
}

async function load() {
  if (!board.shown) return;
  const generation = ++board.generation;
  if (!hasCredential()) {
    setMessage('Sign in, or enter your API key above, to see the dashboard.');
    return;
  }
  const choice = WINDOWS.find((w) => w.value === board.window) ?? WINDOWS[1];
  const params = new URLSearchParams({ window: choice.value, bucketCount: String(choice.buckets) });
  try {
    const stats = await (await api(`/v1/stats?${params}`)).json();
    if (generation !== board.generation) return;
    render(stats, choice);
    setMessage('');
    $('dashboard-updated').textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    if (generation !== board.generation) return;
    setMessage(error.isUnauthenticated ? 'The API key was rejected. Enter a valid key above.'
      : `The dashboard could not be read: ${error.message}`);
  }
}

function setMessage(text) {
  $('dashboard-message').textContent = text;
  $('dashboard-message').hidden = !text;
}

function render(stats, choice) {
  $('dashboard-view').dataset.window = choice.value;
  renderTiles(stats);
  $('dashboard-chart').replaceChildren(drawRunsChart(stats, { windowLabel: choice.label }));
  $('chart-title').textContent = `Runs per ${formatWidth(durationMs(stats.bucket_width))}, by state`;
  fill('models', (stats.models ?? []).map(modelRow), 'No model was called in this window.');
  $('dashboard-dependencies').replaceChildren(...(stats.dependencies ?? []).map(dependencyItem));
  fill('errors', (stats.top_error_groups ?? []).map(errorRow), 'No errors in this window.');
  fill('failures', (stats.recent_failures ?? []).map(failureRow), 'No failed runs in this window.');
}

function renderTiles(stats) {
  const total = Number(stats.total_executions ?? 0);
  const finished = ['completed', 'failed', 'cancelled'].map((s) => Number(stats[`${s}_executions`] ?? 0));
  const rate = Number(stats.error_rate ?? 0);
  const depth = Number(stats.queue_depth ?? -1);
  const cost = Number(stats.estimated_cost_usd ?? 0);
  const unpriced = (stats.models ?? []).filter((m) => !m.price_known).length;
  $('dashboard-tiles').replaceChildren(
    tile('runs', 'Runs', total, String(total),
      `${finished[0]} completed · ${finished[1]} failed · ${finished[2]} cancelled · ${Number(stats.active_executions ?? 0)} active`),
    tile('error-rate', 'Error rate', rate, `${(rate * 100).toFixed(1)}%`, 'failed of finished runs'),
    tile('p50', 'p50 duration', Number(stats.p50_duration_ms ?? 0), formatDuration(stats.p50_duration_ms), 'finished runs'),
    tile('p95', 'p95 duration', Number(stats.p95_duration_ms ?? 0), formatDuration(stats.p95_duration_ms), 'finished runs'),
    tile('cost', 'Estimated cost', cost, formatUsd(cost),
      unpriced ? `${unpriced} model${unpriced === 1 ? '' : 's'} without a known price` : 'at list prices'),
    tile('queue', 'Queue depth', depth, depth < 0 ? 'unknown' : String(depth),
      depth < 0 ? 'the queue cannot be read (Redis)' : 'background runs waiting'));
}

function tile(name, label, value, text, note) {
  return h('li', { class: `tile tile-${name}`, 'data-testid': `tile-${name}`, 'data-value': String(value) },
    h('span', { class: 'tile-label', id: `tile-${name}-label`, text: label }),
    h('span', { class: 'tile-value', 'data-testid': 'tile-value', 'aria-describedby': `tile-${name}-label`, text }),
    h('span', { class: 'tile-note', text: note }));
}

function fill(name, rows, empty) {
  $(`dashboard-${name}`).replaceChildren(...rows);
  $(`dashboard-${name}-empty`).textContent = rows.length ? '' : empty;
  $(`dashboard-${name}-empty`).hidden = rows.length > 0;
}

function modelRow(model) {
  const known = Boolean(model.price_known);
  return h('tr', { 'data-testid': 'model-row', 'data-model': model.model ?? '', 'data-provider': model.provider ?? '' },
    h('td', { text: model.provider || '–' }),
    h('th', { scope: 'row', class: 'mono', text: model.model || '(not named)' }),
    num(model.calls), num(model.input_tokens), num(model.output_tokens), num(model.cached_tokens),
    h('td', {
      class: `num${known ? '' : ' muted'}`, 'data-testid': 'model-cost', 'data-cost': String(Number(model.estimated_cost_usd ?? 0)),
      title: known ? '' : 'No price is known for this model', text: known ? formatUsd(Number(model.estimated_cost_usd ?? 0)) : 'no price',
    }));
}

function num(value) {
  return h('td', { class: 'num', text: Number(value ?? 0).toLocaleString('en-US') });
}

function dependencyItem(dependency) {
  const status = String(dependency.status || 'UNKNOWN');
  const latency = status === 'SERVING' ? formatMs(dependency.latency_ms) : '';
  return h('li', {
    class: `dep health-${cssToken(status)}`, 'data-testid': 'dashboard-dependency', 'data-name': dependency.name ?? '', 'data-status': status,
  },
  h('span', { class: 'dep-dot', 'aria-hidden': 'true' }),
  h('span', { class: 'dep-name', text: dependency.name ?? '?' }),
  h('span', { class: 'dep-status', text: status }),
  latency ? h('span', { class: 'dep-latency', text: latency }) : null,
  dependency.message ? h('span', { class: 'dep-message', text: truncate(String(dependency.message), 120) }) : null);
}

function errorRow(group) {
  return h('tr', { 'data-testid': 'error-group-row', 'data-code': group.code ?? '' },
    h('th', { scope: 'row', class: 'mono', text: group.code ?? '' }),
    h('td', { text: group.node_type || '–' }),
    h('td', { class: 'wrap', title: group.sample_message ?? '', text: truncate(String(group.message_pattern ?? ''), 160) }),
    num(group.count), num(group.failed_execution_count),
    h('td', {}, timeElement(group.last_seen_time)));
}

function failureRow(failure) {
  const name = String(failure.name ?? '');
  const id = name.replace(/^executions\//, '');
  return h('tr', { 'data-testid': 'recent-failure', 'data-name': name },
    h('th', { scope: 'row' }, h('a', {
      href: executionHref(name), class: 'mono', 'data-testid': 'recent-failure-link', title: name,
      'aria-label': `Run ${id}`, text: id.slice(0, 8),
    })),
    h('td', { class: 'mono', text: failure.workflow ? failure.workflow.replace(/^workflows\//, '').slice(0, 8) : 'inline spec' }),
    h('td', { class: 'wrap' }, h('span', { class: 'mono failure-code', text: failure.error_code ?? '' }),
      h('span', { text: ` ${truncate(String(failure.error_message ?? ''), 140)}` })),
    h('td', {}, timeElement(failure.create_time)),
    h('td', { class: 'num', text: formatDuration(failure.duration_ms) }));
}

function timeElement(iso) {
  return iso ? h('time', { datetime: iso, title: fullTime(iso), text: relativeTime(iso) }) : '';
}

export function formatDuration(ms) {
  const value = Number(ms ?? 0);
  if (!value) return '–';
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : formatMs(value);
}

const USD = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 2 });
const SMALL_USD = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', maximumSignificantDigits: 3 });

export function formatUsd(value) {
  return value > 0 && value < 1 ? SMALL_USD.format(value) : USD.format(value);
}
