// One stored run (`#/executions/<id>`), as GetExecution (`GET /v1/executions/<id>`) has it: its
// state, workflow, times, tokens, error, each node's last attempt and its outputs. Reached from
// the dashboard's failures; read once each time it is shown.

import { api } from '../lib/api.js';
import { $, cssToken, h } from '../lib/dom.js';
import { formatMs, formatTokens, fullTime, usageTitle } from '../lib/format.js';

let generation = 0;

export async function showExecution(name) {
  const current = ++generation;
  const view = $('execution-view');
  view.dataset.name = name;
  view.replaceChildren(h('div', { class: 'card' }, h('p', { class: 'list-message', role: 'status', text: `Loading ${name}…` })));
  let execution;
  try {
    execution = await (await api(`/v1/${name}`)).json();
  } catch (error) {
    if (current !== generation) return;
    const text = error.isUnauthenticated ? 'The API key was rejected. Enter a valid key above.'
      : `${name} could not be read: ${error.message}`;
    view.replaceChildren(h('div', { class: 'card' }, backLink(),
      h('p', { class: 'run-error', 'data-testid': 'execution-load-error', role: 'alert', text })));
    return;
  }
  if (current === generation) view.replaceChildren(render(execution));
}

function backLink() {
  return h('p', { class: 'execution-back' }, h('a', { href: '#/dashboard', text: '← Dashboard' }));
}

function render(execution) {
  const state = String(execution.state ?? '').replace(/^STATE_/, '').toLowerCase() || 'unknown';
  const error = execution.error && (execution.error.code || execution.error.message) ? execution.error : null;
  const trace = Array.isArray(execution.trace) ? execution.trace : [];
  return h('div', { class: 'card execution-card', 'data-testid': 'execution-view' },
    backLink(),
    h('div', { class: 'card-head' },
      h('h1', { text: 'Execution' }),
      h('span', { class: `pill run-state run-${cssToken(state)}`, 'data-testid': 'execution-state', text: state }),
      h('span', { class: 'run-execution muted', 'data-testid': 'execution-name', text: execution.name ?? '' })),
    h('dl', { class: 'execution-facts' },
      ...fact('Workflow', execution.workflow ? `${execution.workflow} (version ${execution.workflow_version ?? '?'})` : 'inline spec'),
      ...fact('Created', fullTime(execution.create_time)),
      ...fact('Duration', execution.duration_ms ? formatMs(execution.duration_ms) : '–'),
      ...fact('Tokens', formatTokens(execution.usage) || '–', execution.usage ? usageTitle(execution.usage) : ''),
      ...fact('Trace id', execution.trace_id || '–')),
    error ? h('div', { class: 'run-error', 'data-testid': 'execution-error', role: 'alert',
      text: `${error.code ?? 'error'}: ${error.message ?? ''}${error.node_id ? ` (node ${error.node_id})` : ''}` }) : null,
    h('h2', { class: 'execution-subtitle', text: 'Nodes' }),
    h('div', { class: 'table-wrap' }, h('table', { class: 'node-table', 'data-testid': 'execution-nodes' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', text: 'Node' }), h('th', { scope: 'col', text: 'Status' }),
        h('th', { scope: 'col', class: 'num', text: 'Attempts' }), h('th', { scope: 'col', class: 'num', text: 'Duration' }),
        h('th', { scope: 'col', class: 'wide', text: 'Error' }))),
      h('tbody', {}, ...trace.map(nodeRow)))),
    execution.outputs && Object.keys(execution.outputs).length ? h('div', { class: 'outputs' },
      h('h3', { text: 'Outputs' }), h('pre', { class: 'json', text: JSON.stringify(execution.outputs, null, 2) })) : null);
}

function fact(label, value, title = '') {
  return [h('dt', { text: label }), h('dd', { title: title || null, text: value })];
}

function nodeRow(node) {
  const attempts = Array.isArray(node.attempts) ? node.attempts : [];
  const last = attempts[attempts.length - 1] ?? {};
  const status = String(node.status ?? '');
  const error = last.error && (last.error.code || last.error.message) ? `${last.error.code}: ${last.error.message}` : '';
  return h('tr', { class: 'node-row', 'data-testid': 'execution-node', 'data-node-id': node.node_id ?? '', 'data-status': status },
    h('th', { scope: 'row' }, h('span', { class: 'row-id', text: node.node_id ?? '' }), h('span', { class: 'row-type', text: node.node_type ?? '' })),
    h('td', {}, h('span', { class: `status-badge status-${cssToken(status)}`, text: status })),
    h('td', { class: 'num', text: String(attempts.length) }),
    h('td', { class: 'num', text: formatMs(last.duration_ms) }),
    h('td', { class: 'node-detail', text: error }));
}
