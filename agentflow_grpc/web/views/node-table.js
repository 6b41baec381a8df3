// The run's node table: a row per node with its status, attempt, duration, usage and the text it
// streams (or its output); status changes also colour the node in the graph.

import { $, h, truncate } from '../lib/dom.js';
import { formatMs, formatTokens, usageTitle } from '../lib/format.js';
import { markGraphNodeEnded, nodeLabel, setGraphNodeStatus, updateEdges } from './graph.js';

export function addNodeRow(run, node) {
  const cells = {
    status: h('span', { class: 'status-badge status-pending', text: 'pending' }),
    attempt: h('td', { class: 'num node-attempt' }),
    duration: h('td', { class: 'num', 'data-testid': 'node-duration' }),
    usage: h('td', { class: 'num', 'data-testid': 'node-usage' }),
    tokens: h('pre', { class: 'tokens', 'data-testid': 'node-tokens' }),
    output: h('code', { class: 'node-output', hidden: true }),
    detail: h('p', { class: 'node-detail', hidden: true }),
  };
  const text = document.createTextNode('');
  cells.tokens.append(text);
  const row = h('tr', { class: 'node-row', 'data-testid': 'node-row', 'data-node-id': node.id, 'data-status': 'pending' },
    h('th', { scope: 'row' }, h('span', { class: 'row-id', text: node.id }), h('span', { class: 'row-type', text: nodeLabel(node) })),
    h('td', {}, cells.status), cells.attempt, cells.duration, cells.usage,
    h('td', { class: 'wide' }, cells.tokens, cells.output, cells.detail));
  run.nodes.set(node.id, { status: 'pending', attempt: 0, duration: null, usage: null, detail: '', text });
  run.rows.set(node.id, { row, cells });
  return row;
}

/** A node the spec does not show (defensive): it gets a row at the end. */
export function nodeState(run, id, type = '') {
  if (!run.nodes.has(id)) $('node-rows').append(addNodeRow(run, { id: String(id ?? ''), type: type || '?' }));
  return run.nodes.get(id);
}

export function setNodeStatus(run, id, status) {
  const node = nodeState(run, id);
  node.status = status;
  setGraphNodeStatus(id, status);
  renderRow(run, id);
  updateEdges((nodeId) => run.nodes.get(nodeId)?.status);
}

function renderRow(run, id) {
  const node = run.nodes.get(id);
  const { row, cells } = run.rows.get(id);
  row.dataset.status = node.status;
  row.classList.remove('is-skipped', 'is-interrupted');
  cells.status.textContent = node.status;
  cells.status.className = `status-badge status-${node.status}`;
  cells.attempt.textContent = node.attempt ? String(node.attempt) : '';
  cells.duration.textContent = formatMs(node.duration);
  cells.usage.textContent = formatTokens(node.usage);
  cells.usage.title = node.usage ? usageTitle(node.usage) : '';
  cells.detail.textContent = node.detail;
  cells.detail.hidden = !node.detail;
  // a node that streamed nothing (input, router, database…) shows its output instead
  const output = node.status === 'completed' && !node.text.data && node.output !== undefined
    ? JSON.stringify(node.output) ?? '' : '';
  cells.output.textContent = truncate(output, 300);
  cells.output.title = truncate(output, 2_000);
  cells.output.hidden = !output;
}

/** After the run: a node that never started is "not run", one still going is "interrupted". */
export function markEnded(run, id, label, className) {
  const { row, cells } = run.rows.get(id);
  row.classList.add(className);
  cells.status.textContent = label;
  markGraphNodeEnded(id, className);
}

export function appendTokens(node, text) {
  const pre = node.text.parentNode;
  const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;
  node.text.appendData(text);
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}
