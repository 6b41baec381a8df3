// AgentFlow web console: lists workflows, draws a workflow's graph, runs it with inputs and shows
// the live event stream per node, plus a health panel. It uses only the public REST/SSE API
// (Envoy's gRPC-JSON transcoder) with an API key sent as `x-api-key`.
//
// Everything from the API is written with textContent / setAttribute, never as HTML.

const KEY_STORAGE = 'agentflow.api_key';
const HEALTH_INTERVAL_MS = 10_000;
const HEALTH_TIMEOUT_MS = 5_000;
const PAGE_SIZE = 50;
const MAX_LOG_LINES = 2_000;
const TERMINAL_EVENTS = new Set(['execution_completed', 'execution_failed', 'execution_cancelled']);
const GRPC_CODES = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND',
  'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED',
  'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED',
];
const GRAPH = { nodeWidth: 164, nodeHeight: 56, colGap: 64, rowGap: 26, pad: 20, loopDrop: 56 };
const SVG_NS = 'http://www.w3.org/2000/svg';

const state = {
  apiKey: '',
  workflows: [],
  nextPageToken: '',
  listGeneration: 0,
  selected: null,
  layout: null,
  graphNodes: new Map(), // node id → <g>
  graphEdges: [], // {edge, path}
  run: null,
};

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- DOM helpers

/** An HTML element; `text` sets textContent, other props become attributes. */
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  setProps(node, props);
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

/** An SVG element (presentation attributes only, no style). */
function svg(tag, props = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setProps(node, props);
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function setProps(node, props) {
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'text') node.textContent = String(value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
}

function truncate(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function cssToken(text) {
  return String(text ?? '').toLowerCase().replace(/[^a-z0-9-]+/g, '-');
}

// ---------------------------------------------------------------- formatting

function formatMs(ms) {
  return ms === null || ms === undefined || Number.isNaN(Number(ms)) ? '' : `${Number(Number(ms).toFixed(1))} ms`;
}

function formatSeconds(ms) {
  return `${(Number(ms) / 1000).toFixed(2)} s`;
}

function usageTitle(usage) {
  return `prompt ${Number(usage.prompt_tokens ?? 0)} · completion ${Number(usage.completion_tokens ?? 0)}`;
}

function formatTokens(usage) {
  return usage ? `${Number(usage.total_tokens ?? 0)} tokens` : '';
}

function relativeTime(iso) {
  const time = Date.parse(iso);
  if (Number.isNaN(time)) return '';
  const seconds = (time - Date.now()) / 1000;
  const units = [['year', 31_536_000], ['month', 2_592_000], ['day', 86_400], ['hour', 3_600], ['minute', 60]];
  const format = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) return format.format(Math.round(seconds / size), unit);
  }
  return 'just now';
}

function fullTime(iso) {
  const time = Date.parse(iso);
  return Number.isNaN(time) ? '' : new Date(time).toLocaleString();
}

function clockTime(iso) {
  const time = Date.parse(iso);
  if (Number.isNaN(time)) return '';
  return new Date(time).toLocaleTimeString([], {
    hour12: false, hour: '2-digit', minute: '2-digit', second: '2-digit', fractionalSecondDigits: 3,
  });
}

// ---------------------------------------------------------------- API key

function readStoredKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) ?? '';
  } catch {
    return state.apiKey;
  }
}

function storeKey(key) {
  state.apiKey = key;
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage disabled: the key lives in memory for this page only
  }
}

/** `#api_key=<key>`: save the key and take it out of the address bar. */
function takeKeyFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (!params.has('api_key')) return false;
  storeKey(params.get('api_key').trim());
  history.replaceState(null, '', location.pathname + location.search);
  return true;
}

function onKeySaved(event) {
  event.preventDefault();
  storeKey($('api-key-input').value.trim());
  $('api-key-state').textContent = state.apiKey ? 'saved' : 'cleared';
  setTimeout(() => { $('api-key-state').textContent = ''; }, 2_000);
  hideError();
  loadWorkflows();
}

// ---------------------------------------------------------------- REST calls and errors

class ApiError extends Error {
  constructor({ status = 0, code, message, reason = '', violations = [], requestId = '' }) {
    super(message);
    this.status = status;
    this.code = code;
    this.reason = reason;
    this.violations = violations;
    this.requestId = requestId;
  }

  get codeName() {
    if (Number.isInteger(this.code) && GRPC_CODES[this.code]) return GRPC_CODES[this.code];
    if (typeof this.code === 'string' && this.code) return this.code;
    return this.status ? `HTTP ${this.status}` : 'NETWORK';
  }

  get isAuth() {
    return this.isUnauthenticated || this.isForbidden;
  }

  get isUnauthenticated() {
    return this.status === 401 || this.code === 16;
  }

  get isForbidden() {
    return this.status === 403 || this.code === 7;
  }
}

async function api(path, { method = 'GET', body, signal, auth = true, accept = 'application/json' } = {}) {
  const headers = { Accept: accept };
  if (auth) headers['x-api-key'] = state.apiKey;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method, headers, signal, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError({ message: `cannot reach the server (${error.message})` });
  }
  if (!response.ok) throw await errorFromResponse(response);
  return response;
}

/** A google.rpc.Status body → ApiError (non-JSON bodies, e.g. from a proxy, keep their text). */
async function errorFromResponse(response) {
  const text = await response.text().catch(() => '');
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  const details = Array.isArray(body?.details) ? body.details : [];
  const ofType = (name) => details.find((detail) => String(detail?.['@type'] ?? '').endsWith(name));
  const violations = details.flatMap((detail) => detail?.field_violations ?? detail?.fieldViolations ?? []);
  const requestInfo = ofType('google.rpc.RequestInfo');
  return new ApiError({
    status: response.status,
    code: body?.code,
    message: String(body?.message || text.trim().slice(0, 300) || response.statusText || 'request failed'),
    reason: ofType('google.rpc.ErrorInfo')?.reason ?? '',
    violations,
    requestId: requestInfo?.request_id ?? requestInfo?.requestId ?? '',
  });
}

// ---------------------------------------------------------------- error banner

function showError(error, context) {
  const api = error instanceof ApiError;
  let title = `${context} failed`;
  let hint = '';
  if (api && error.isUnauthenticated) {
    title = 'The API key was rejected';
    hint = ' — check the key and save it again.';
  } else if (api && error.isForbidden) {
    title = `${context} is not allowed with this API key`;
    hint = ' — use a key with a role that may do this.';
  }
  const where = api ? `${error.codeName}${error.status ? ` (HTTP ${error.status})` : ''}: ` : '';
  showBanner(title, `${where}${error.message}${hint}`, error.violations ?? [], error.requestId);
}

function showBanner(title, message, violations = [], requestId = '') {
  $('error-title').textContent = title;
  $('error-message').textContent = message;
  $('error-violations').replaceChildren(...violations.map((violation) => h('li', {},
    h('code', { text: violation.field ?? '' }),
    h('span', { text: ` ${violation.description ?? ''}` }),
    violation.reason ? h('span', { class: 'muted', text: ` (${violation.reason})` }) : null)));
  $('error-request').textContent = requestId ? `request id ${requestId}` : '';
  $('error-banner').hidden = false;
}

function hideError() {
  $('error-banner').hidden = true;
}

// ---------------------------------------------------------------- health panel

async function refreshHealth() {
  try {
    const response = await api('/v1/health', { auth: false, signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS) });
    renderHealth(await response.json());
  } catch (error) {
    renderHealth(null, error);
  }
}

function renderHealth(health, error) {
  const status = health ? String(health.status || 'UNKNOWN') : 'UNREACHABLE';
  const pill = $('health-status');
  pill.textContent = status;
  pill.dataset.status = status;
  pill.className = `pill health-${cssToken(status)}`;
  pill.title = error ? `Server unreachable: ${error.message}` : `Checked ${new Date().toLocaleTimeString()}`;
  $('health-version').textContent = health?.version ? `v${health.version}` : '–';
  const dependencies = Array.isArray(health?.dependencies) ? health.dependencies : [];
  $('health-dependencies').replaceChildren(...dependencies.map(dependencyRow));
}

function dependencyRow(dependency) {
  const status = String(dependency.status || 'UNKNOWN');
  const latency = dependency.latency_ms !== undefined && status === 'SERVING' ? formatMs(dependency.latency_ms) : '';
  return h('li', {
    class: `dep health-${cssToken(status)}`,
    'data-testid': 'health-dependency',
    'data-name': dependency.name ?? '',
    'data-status': status,
    title: dependency.message || status,
  },
  h('span', { class: 'dep-dot', 'aria-hidden': 'true' }),
  h('span', { class: 'dep-name', text: dependency.name ?? '?' }),
  h('span', { class: 'dep-status', text: status }),
  latency ? h('span', { class: 'dep-latency', text: latency }) : null);
}

// ---------------------------------------------------------------- workflow list

function setListMessage(text) {
  $('workflow-message').textContent = text;
  $('workflow-message').hidden = !text;
}

async function loadWorkflows({ more = false } = {}) {
  const generation = ++state.listGeneration;
  if (!more) {
    state.workflows = [];
    state.nextPageToken = '';
    $('workflow-items').replaceChildren();
    $('workflows-more').hidden = true;
  }
  if (!state.apiKey) {
    setListMessage('Enter your API key above to list workflows.');
    return;
  }
  setListMessage(more ? '' : 'Loading…');
  const params = new URLSearchParams({ page_size: String(PAGE_SIZE) });
  if (more && state.nextPageToken) params.set('page_token', state.nextPageToken);
  try {
    const page = await (await api(`/v1/workflows?${params}`)).json();
    if (generation !== state.listGeneration) return;
    appendWorkflows(page.workflows ?? []);
    state.nextPageToken = page.next_page_token ?? page.nextPageToken ?? '';
    $('workflows-more').hidden = !state.nextPageToken;
    setListMessage(state.workflows.length ? '' : 'No workflows stored yet.');
  } catch (error) {
    if (generation !== state.listGeneration) return;
    setListMessage(error.isUnauthenticated ? 'The API key was rejected. Enter a valid key above.'
      : error.isForbidden ? 'This API key may not list workflows.' : 'Could not load the workflows.');
    showError(error, 'Listing workflows');
  }
}

function appendWorkflows(workflows) {
  state.workflows.push(...workflows);
  $('workflow-items').append(...workflows.map(workflowItem));
}

function workflowItem(workflow) {
  const specName = workflow.spec_name || workflow.spec?.name || workflow.name;
  const selected = state.selected?.name === workflow.name;
  const button = h('button', {
    type: 'button',
    class: `workflow-item${selected ? ' is-selected' : ''}`,
    'data-testid': 'workflow-item',
    'data-name': workflow.name,
    'aria-pressed': String(selected),
  },
  h('span', { class: 'wf-name', text: specName }),
  workflow.spec?.title ? h('span', { class: 'wf-title', text: workflow.spec.title }) : null,
  h('span', { class: 'wf-meta' },
    h('span', { class: 'tag', text: `v${workflow.version ?? '?'}` }),
    workflow.update_time ? h('time', {
      datetime: workflow.update_time, title: fullTime(workflow.update_time), text: `updated ${relativeTime(workflow.update_time)}`,
    }) : null));
  button.addEventListener('click', () => selectWorkflow(workflow));
  return h('li', {}, button);
}

function markSelectedItem() {
  for (const item of $('workflow-items').querySelectorAll('.workflow-item')) {
    const selected = item.dataset.name === state.selected?.name;
    item.classList.toggle('is-selected', selected);
    item.setAttribute('aria-pressed', String(selected));
  }
}

// ---------------------------------------------------------------- selected workflow

function selectWorkflow(workflow) {
  if (state.run?.active) {
    showBanner('A run is in progress', 'Cancel the current run before switching workflows.');
    return;
  }
  state.selected = workflow;
  state.run = null;
  markSelectedItem();
  const spec = workflow.spec ?? {};
  renderWorkflowHeader(workflow, spec);
  state.layout = computeLayout(spec);
  renderGraph(state.layout);
  renderRunForm(spec.inputs);
  $('run-panel').hidden = true;
  $('detail-empty').hidden = true;
  $('detail').hidden = false;
}

function renderWorkflowHeader(workflow, spec) {
  const nodes = spec.nodes?.length ?? 0;
  const edges = spec.edges?.length ?? 0;
  $('workflow-title').textContent = spec.title || workflow.spec_name || workflow.name;
  $('workflow-meta').textContent = `${workflow.spec_name || spec.name || ''} · ${workflow.name} · ${nodes} nodes · ${edges} edges`;
  $('workflow-version').textContent = `version ${workflow.version ?? '?'}`;
  $('workflow-description').textContent = spec.description ?? '';
  $('workflow-description').hidden = !spec.description;
}

// ---------------------------------------------------------------- graph layout

/** Layers by longest path from the sources, after dropping the back edges a DFS finds. */
function computeLayout(spec) {
  const nodes = (Array.isArray(spec.nodes) ? spec.nodes : []).filter((node) => typeof node?.id === 'string');
  const ids = new Set(nodes.map((node) => node.id));
  const edges = (Array.isArray(spec.edges) ? spec.edges : []).filter((edge) => ids.has(edge?.from) && ids.has(edge?.to));
  const back = findBackEdges(nodes, edges);
  const forward = edges.filter((edge) => !back.has(edge));
  const layers = longestPathLayers(nodes, forward);
  const columns = orderColumns(nodes, forward, layers);
  const { positions, width, height } = placeNodes(columns, back.size > 0);
  return { nodes, edges, back, columns, positions, width, height, order: columns.flat() };
}

function findBackEdges(nodes, edges) {
  const outgoing = new Map(nodes.map((node) => [node.id, []]));
  for (const edge of edges) outgoing.get(edge.from).push(edge);
  const visiting = new Set();
  const done = new Set();
  const back = new Set();
  const visit = (id) => {
    visiting.add(id);
    for (const edge of outgoing.get(id)) {
      if (visiting.has(edge.to)) back.add(edge);
      else if (!done.has(edge.to)) visit(edge.to);
    }
    visiting.delete(id);
    done.add(id);
  };
  const roots = [...nodes.filter((node) => node.type === 'input'), ...nodes];
  for (const node of roots) if (!done.has(node.id)) visit(node.id);
  return back;
}

function longestPathLayers(nodes, forward) {
  const indegree = new Map(nodes.map((node) => [node.id, 0]));
  const next = new Map(nodes.map((node) => [node.id, []]));
  for (const edge of forward) {
    indegree.set(edge.to, indegree.get(edge.to) + 1);
    next.get(edge.from).push(edge.to);
  }
  const layers = new Map(nodes.map((node) => [node.id, 0]));
  const queue = nodes.filter((node) => indegree.get(node.id) === 0).map((node) => node.id);
  while (queue.length) {
    const id = queue.shift();
    for (const to of next.get(id)) {
      layers.set(to, Math.max(layers.get(to), layers.get(id) + 1));
      indegree.set(to, indegree.get(to) - 1);
      if (indegree.get(to) === 0) queue.push(to);
    }
  }
  return layers;
}

/** Columns of node ids; each column sorted by the mean row of its predecessors (fewer crossings). */
function orderColumns(nodes, forward, layers) {
  const count = Math.max(0, ...layers.values()) + 1;
  const columns = Array.from({ length: count }, () => []);
  for (const node of nodes) columns[layers.get(node.id)].push(node.id);
  const row = new Map();
  columns[0]?.forEach((id, index) => row.set(id, index));
  for (let layer = 1; layer < count; layer += 1) {
    const key = (id, index) => {
      const rows = forward.filter((edge) => edge.to === id && row.has(edge.from)).map((edge) => row.get(edge.from));
      return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : index;
    };
    const keys = new Map(columns[layer].map((id, index) => [id, key(id, index)]));
    columns[layer].sort((a, b) => keys.get(a) - keys.get(b));
    columns[layer].forEach((id, index) => row.set(id, index));
  }
  return columns;
}

function placeNodes(columns, hasLoops) {
  const { nodeWidth, nodeHeight, colGap, rowGap, pad, loopDrop } = GRAPH;
  const rows = Math.max(1, ...columns.map((column) => column.length));
  const columnHeight = (n) => n * nodeHeight + (n - 1) * rowGap;
  const positions = new Map();
  columns.forEach((column, layer) => {
    const top = pad + (columnHeight(rows) - columnHeight(column.length)) / 2;
    column.forEach((id, index) => {
      positions.set(id, { x: pad + layer * (nodeWidth + colGap), y: top + index * (nodeHeight + rowGap) });
    });
  });
  const width = pad * 2 + columns.length * nodeWidth + Math.max(0, columns.length - 1) * colGap;
  const height = pad * 2 + columnHeight(rows) + (hasLoops ? loopDrop : 0);
  return { positions, width, height };
}

// ---------------------------------------------------------------- graph drawing

function renderGraph(layout) {
  const graph = $('workflow-graph');
  const width = Math.max(layout.width, 200);
  setProps(graph, { viewBox: `0 0 ${width} ${layout.height}`, width, height: layout.height });
  const nodeById = new Map(layout.nodes.map((node) => [node.id, node]));
  state.graphEdges = layout.edges.map((edge) => ({ edge, group: edgeGroup(edge, layout) }));
  state.graphNodes = new Map(layout.order.map((id) => [id, nodeGroup(nodeById.get(id), layout.positions.get(id))]));
  graph.replaceChildren(
    svg('defs', {}, arrowMarker('arrow', 'arrow'), arrowMarker('arrow-active', 'arrow arrow-active')),
    svg('g', { class: 'edges' }, ...state.graphEdges.map((item) => item.group)),
    svg('g', { class: 'nodes' }, ...state.graphNodes.values()),
  );
}

function arrowMarker(id, className) {
  return svg('marker', {
    id, class: className, viewBox: '0 0 10 10', refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse',
  }, svg('path', { d: 'M 0 0 L 10 5 L 0 10 z' }));
}

function edgeGroup(edge, layout) {
  const { nodeWidth: w, nodeHeight: hgt } = GRAPH;
  const from = layout.positions.get(edge.from);
  const to = layout.positions.get(edge.to);
  const isBack = layout.back.has(edge);
  let d;
  let label;
  if (isBack) {
    const [x1, y1, x2, y2] = [from.x + w * 0.65, from.y + hgt, to.x + w * 0.35, to.y + hgt];
    const drop = Math.max(y1, y2) + GRAPH.loopDrop;
    d = `M ${x1} ${y1} C ${x1} ${drop}, ${x2} ${drop}, ${x2} ${y2}`;
    label = { x: (x1 + x2) / 2, y: drop - 10 };
  } else {
    const [x1, y1, x2, y2] = [from.x + w, from.y + hgt / 2, to.x, to.y + hgt / 2];
    const bend = Math.max(32, (x2 - x1) / 2);
    d = `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`;
    label = { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 6 };
  }
  return svg('g', { class: `edge${isBack ? ' is-back' : ''}`, 'data-from': edge.from, 'data-to': edge.to },
    svg('path', { d, 'marker-end': 'url(#arrow)' }),
    edge.route ? svg('text', { class: 'edge-label', x: label.x, y: label.y, 'text-anchor': 'middle', text: edge.route }) : null);
}

function nodeLabel(node) {
  const type = node.type === 'plugin' ? (node.config?.plugin ?? node.plugin ?? 'plugin') : node.type;
  const model = node.config?.model;
  return truncate(model ? `${type} · ${model}` : String(type ?? '?'), 22);
}

function nodeGroup(node, position) {
  const { nodeWidth: w, nodeHeight: hgt } = GRAPH;
  return svg('g', {
    class: `graph-node type-${cssToken(node.type)}`,
    'data-testid': 'graph-node',
    'data-node-id': node.id,
    'data-status': 'pending',
    transform: `translate(${position.x} ${position.y})`,
  },
  svg('title', { text: `${node.id} (${node.type})${node.description ? ` — ${node.description}` : ''}` }),
  svg('rect', { class: 'node-box status-pending', width: w, height: hgt, rx: 10, ry: 10 }),
  svg('rect', { class: 'node-accent', x: 0, y: 12, width: 4, height: hgt - 24, rx: 2 }),
  svg('text', { class: 'node-id', x: 16, y: 24, text: truncate(node.id, 16) }),
  svg('text', { class: 'node-type', x: 16, y: 42, text: nodeLabel(node) }),
  svg('circle', { class: 'node-dot', cx: w - 14, cy: 14, r: 4.5 }));
}

/** An edge is lit once its source completed and its target started. */
function updateEdges(run) {
  for (const { edge, group } of state.graphEdges) {
    const from = run.nodes.get(edge.from)?.status;
    const to = run.nodes.get(edge.to)?.status;
    const active = from === 'completed' && to !== undefined && to !== 'pending';
    group.classList.toggle('is-active', active);
    group.firstChild.setAttribute('marker-end', active ? 'url(#arrow-active)' : 'url(#arrow)');
  }
}

// ---------------------------------------------------------------- run form

function isRequired(param) {
  return param.required ?? !('default' in param);
}

function renderRunForm(inputs) {
  const entries = Object.entries(inputs && typeof inputs === 'object' ? inputs : {});
  $('run-fields').replaceChildren(...(entries.length
    ? entries.map(([name, param]) => inputField(name, param ?? {}))
    : [h('p', { class: 'muted', text: 'This workflow takes no inputs.' })]));
}

function inputField(name, param) {
  const type = param.type ?? 'string';
  const control = inputControl(name, param);
  setProps(control, { id: `input-${name}`, 'data-testid': 'run-input', 'data-input': name, name });
  const label = h('label', { class: 'field-label', for: `input-${name}` },
    h('span', { class: 'field-name', text: name }),
    h('span', { class: 'field-type', text: type }),
    isRequired(param) ? h('span', { class: 'field-required', text: 'required' }) : null);
  const datalist = Array.isArray(param.enum) && type === 'string'
    ? h('datalist', { id: `enum-${name}` }, ...param.enum.map((value) => h('option', { value: String(value) })))
    : null;
  const kind = ['object', 'array'].includes(type) ? 'json' : type === 'boolean' ? 'check' : 'plain';
  return h('div', { class: `field field-${kind}`, 'data-field': name },
    label, control, datalist,
    param.description ? h('p', { class: 'field-help', text: param.description }) : null,
    h('p', { class: 'field-error', hidden: true }));
}

function inputControl(name, param) {
  const fallback = param.default;
  switch (param.type) {
    case 'integer':
    case 'number': {
      const input = h('input', { type: 'number', step: param.type === 'integer' ? '1' : 'any', min: param.minimum, max: param.maximum });
      input.value = fallback ?? '';
      return input;
    }
    case 'boolean': {
      const input = h('input', { type: 'checkbox' });
      input.checked = fallback === true;
      return input;
    }
    case 'object':
    case 'array': {
      const area = h('textarea', { rows: 4, spellcheck: 'false', placeholder: param.type === 'array' ? '[ … ]' : '{ … }' });
      area.value = fallback === undefined ? '' : JSON.stringify(fallback, null, 2);
      return area;
    }
    default: {
      const options = Array.isArray(param.enum) ? param.enum.map(String) : null;
      const input = h('input', {
        type: 'text', spellcheck: 'false', autocomplete: 'off',
        list: options ? `enum-${name}` : null, placeholder: options ? options.join(' | ') : '',
      });
      input.value = fallback === undefined ? '' : String(fallback);
      return input;
    }
  }
}

/** Reads one control: {value} to send, {} to leave out, or {error}. */
function readControl(control, param) {
  const raw = control.value ?? '';
  switch (param.type) {
    case 'boolean':
      return { value: control.checked };
    case 'integer':
    case 'number': {
      if (raw.trim() === '') return control.validity?.badInput ? { error: 'not a number' } : {};
      const value = Number(raw);
      return Number.isFinite(value) ? { value } : { error: 'not a number' };
    }
    case 'object':
    case 'array': {
      if (raw.trim() === '') return {};
      try {
        return { value: JSON.parse(raw) };
      } catch (error) {
        return { error: `not valid JSON (${error.message})` };
      }
    }
    default: // empty: left out, so the server applies the default or reports the missing input
      return raw === '' ? {} : { value: raw };
  }
}

function readInputs(inputs) {
  const values = {};
  const problems = [];
  for (const [name, param] of Object.entries(inputs ?? {})) {
    const control = $(`input-${name}`);
    if (!control) continue;
    const result = readControl(control, param ?? {});
    if (result.error) problems.push({ field: `inputs/${name}`, description: result.error });
    else if ('value' in result) values[name] = result.value;
  }
  return { values, problems };
}

function clearFieldErrors() {
  for (const field of $('run-fields').querySelectorAll('.field')) {
    field.classList.remove('is-invalid');
    const error = field.querySelector('.field-error');
    error.textContent = '';
    error.hidden = true;
  }
}

/** Field violations like `inputs/subject` (or `inputs/subject/…`) go next to that input. */
function markFieldViolations(violations) {
  for (const violation of violations) {
    const match = /^\/?inputs[./]([^./[]+)/.exec(String(violation.field ?? ''));
    const field = match && [...$('run-fields').querySelectorAll('.field')].find((f) => f.dataset.field === match[1]);
    if (!field) continue;
    field.classList.add('is-invalid');
    const error = field.querySelector('.field-error');
    error.textContent = [error.textContent, violation.description].filter(Boolean).join('; ');
    error.hidden = false;
  }
}

// ---------------------------------------------------------------- running

async function onRunSubmit(event) {
  event.preventDefault();
  if (!state.selected || state.run?.active) return;
  hideError();
  clearFieldErrors();
  if (!state.apiKey) {
    showBanner('No API key', 'Enter your API key above before running a workflow.');
    return;
  }
  const { values, problems } = readInputs(state.selected.spec?.inputs);
  if (problems.length) {
    markFieldViolations(problems);
    showBanner('Some inputs are not valid', 'Fix the highlighted inputs and run again.', problems);
    return;
  }
  await execute(beginRun(), { workflow: state.selected.name, inputs: values });
}

async function execute(run, request) {
  try {
    const response = await api('/v1/executions:execute', {
      method: 'POST', body: request, signal: run.controller.signal, accept: 'text/event-stream',
    });
    await readEventStream(response, run);
    if (!run.terminal) {
      finishRun(run, 'interrupted', { note: 'The event stream ended before the run reported its end, so its outcome is unknown.' });
    }
  } catch (error) {
    if (run.finished) return;
    if (error instanceof ApiError) {
      run.rejected = true;
      $('run-panel').classList.add('is-rejected');
      finishRun(run, 'failed', { error: { code: error.reason || error.codeName, message: error.message } });
      markFieldViolations(error.violations);
      showError(error, 'Starting the run');
    } else {
      finishRun(run, 'interrupted', { note: `The event stream broke off (${error.message}); the run's outcome is unknown.` });
    }
  }
}

function beginRun() {
  const run = {
    controller: new AbortController(),
    active: true,
    finished: false,
    terminal: false,
    rejected: false,
    execution: '',
    started: performance.now(),
    timer: null,
    events: 0,
    nodes: new Map(),
    rows: new Map(),
  };
  state.run = run;
  const nodeById = new Map(state.layout.nodes.map((node) => [node.id, node]));
  $('node-rows').replaceChildren(...state.layout.order.map((id) => addNodeRow(run, nodeById.get(id))));
  state.graphNodes.forEach((_, id) => setNodeStatus(run, id, 'pending'));
  $('event-log').replaceChildren();
  $('event-count').textContent = '';
  $('run-outputs-block').hidden = true;
  $('run-error').hidden = true;
  $('run-note').hidden = true;
  $('run-panel').classList.remove('is-rejected');
  $('run-panel').hidden = false;
  setRunState('running');
  setRunning(true);
  run.timer = setInterval(() => updateSummary(run), 200);
  updateSummary(run);
  return run;
}

function cancelRun() {
  const run = state.run;
  if (!run?.active) return;
  run.controller.abort();
  finishRun(run, 'cancelled', { note: 'Cancelled: the stream was closed, so the server cancels the run.' });
}

function setRunning(running) {
  $('run-button').disabled = running;
  $('cancel-button').disabled = !running;
  $('run-button').textContent = running ? 'Running…' : 'Run';
}

function setRunState(text) {
  $('run-state').textContent = text;
  $('run-state').className = `pill run-state run-${text}`;
}

function updateSummary(run, final = {}) {
  $('run-execution').textContent = run.execution;
  if (run.rejected) {
    $('run-summary').textContent = 'request rejected';
    return;
  }
  const duration = final.duration_ms ?? performance.now() - run.started;
  const parts = [final.duration_ms !== undefined ? `took ${formatSeconds(duration)}` : `${formatSeconds(duration)} elapsed`];
  if (final.usage) parts.push(formatTokens(final.usage));
  $('run-summary').textContent = parts.join(' · ');
  $('run-summary').title = final.usage ? usageTitle(final.usage) : '';
}

function finishRun(run, outcome, { error, outputs, usage, duration_ms, note } = {}) {
  if (run.finished) return;
  Object.assign(run, { finished: true, active: false });
  clearInterval(run.timer);
  setRunning(false);
  setRunState(outcome);
  for (const [id, node] of run.nodes) {
    if (node.status === 'pending') markEnded(run, id, 'not run', 'is-skipped');
    if (node.status === 'running' || node.status === 'retrying') markEnded(run, id, 'interrupted', 'is-interrupted');
  }
  if (error) {
    const node = error.node_id ? ` (node ${error.node_id})` : '';
    $('run-error').textContent = `${error.code ?? 'error'}: ${error.message ?? ''}${node}`;
    $('run-error').hidden = false;
  }
  if (outputs !== undefined) {
    $('run-outputs').textContent = JSON.stringify(outputs, null, 2);
    $('run-outputs-block').hidden = false;
  }
  if (note) {
    $('run-note').textContent = note;
    $('run-note').hidden = false;
  }
  updateSummary(run, duration_ms !== undefined ? { duration_ms: Number(duration_ms), usage } : { usage });
}

// ---------------------------------------------------------------- the event stream

/** Server-sent events: messages end at a blank line; `data:` lines are joined by newlines. */
class SseParser {
  #buffer = '';
  #heldCR = false;

  /** Feeds decoded text; returns the data of every complete message. */
  push(text, final = false) {
    let chunk = (this.#heldCR ? '\r' : '') + text;
    this.#heldCR = !final && chunk.endsWith('\r'); // `\r` + `\n` may straddle two chunks
    if (this.#heldCR) chunk = chunk.slice(0, -1);
    this.#buffer += chunk.replace(/\r\n?/g, '\n');
    const messages = [];
    let end;
    while ((end = this.#buffer.indexOf('\n\n')) >= 0) {
      messages.push(this.#buffer.slice(0, end));
      this.#buffer = this.#buffer.slice(end + 2);
    }
    if (final && this.#buffer.trim()) messages.push(this.#buffer); // a last message without its blank line
    if (final) this.#buffer = '';
    return messages.map(SseParser.dataOf).filter((data) => data !== null);
  }

  static dataOf(block) {
    const lines = block.split('\n').filter((line) => line === 'data' || line.startsWith('data:'));
    if (!lines.length) return null; // comments, keep-alives, `event:`/`id:` only
    return lines.map((line) => line.slice(5).replace(/^ /, '')).join('\n');
  }
}

async function readEventStream(response, run) {
  if (!response.body) throw new Error('the response has no body');
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  for (;;) {
    const { value, done } = await reader.read();
    const text = done ? decoder.decode() : decoder.decode(value, { stream: true });
    for (const data of parser.push(text, done)) onMessage(run, data);
    if (done) return;
  }
}

function onMessage(run, data) {
  if (run.finished && !run.terminal) return; // cancelled by the user
  let message;
  try {
    message = JSON.parse(data);
  } catch {
    logLine(run, { sequence: '?', type: 'unparseable message', node_id: truncate(data, 60) });
    return;
  }
  const event = message?.result ?? message;
  if (typeof event?.type !== 'string') {
    if (event?.message) streamError(run, event);
    return;
  }
  if (run.terminal) return; // nothing follows the terminal event
  run.events += 1;
  logLine(run, event);
  EVENT_HANDLERS[event.type]?.(run, event, event.data ?? {});
}

/** A google.rpc.Status sent in place of an event: the stream failed after it started. */
function streamError(run, status) {
  const code = Number.isInteger(status.code) ? GRPC_CODES[status.code] ?? status.code : status.code;
  finishRun(run, 'interrupted', { note: `The stream failed: ${code ?? 'error'}: ${status.message}` });
}

const EVENT_HANDLERS = {
  execution_started(run, event) {
    run.execution = event.execution ?? '';
  },
  node_started(run, event, data) {
    const node = nodeState(run, event.node_id, data.node_type);
    Object.assign(node, { attempt: Number(event.attempt) || 1, duration: null, usage: null, detail: '', output: undefined });
    node.text.data = '';
    setNodeStatus(run, event.node_id, 'running');
  },
  node_token(run, event, data) {
    appendTokens(nodeState(run, event.node_id), String(data.text ?? ''));
  },
  node_completed(run, event, data) {
    const node = nodeState(run, event.node_id);
    Object.assign(node, { duration: data.duration_ms, usage: data.usage ?? null, output: data.output });
    setNodeStatus(run, event.node_id, 'completed');
  },
  node_failed(run, event, data) {
    const node = nodeState(run, event.node_id);
    const code = data.code ?? data.error?.code ?? 'error';
    const message = data.message ?? data.error?.message ?? '';
    const retry = data.will_retry ? ` — retrying${data.retry_in !== undefined ? ` in ${Number(data.retry_in).toFixed(1)} s` : ''}` : '';
    Object.assign(node, { duration: data.duration_ms ?? null, detail: `${code}: ${message}${retry}` });
    setNodeStatus(run, event.node_id, data.will_retry ? 'retrying' : 'failed');
  },
  execution_completed(run, event, data) {
    run.terminal = true;
    finishRun(run, 'completed', { outputs: data.outputs ?? {}, usage: data.usage, duration_ms: data.duration_ms });
  },
  execution_failed(run, event, data) {
    run.terminal = true;
    finishRun(run, 'failed', { error: data.error ?? {}, usage: data.usage, duration_ms: data.duration_ms });
  },
  // Only a follower's stream (StreamExecution) sends this: following broke off, the run may go on.
  stream_error(run, event, data) {
    const error = data.error ?? {};
    finishRun(run, 'interrupted', { note: `The stream broke off (${error.code ?? 'error'}: ${error.message ?? ''}); the run may still be going.` });
  },
  execution_cancelled(run, event, data) {
    run.terminal = true;
    const note = `The run was cancelled${data.reason ? `: ${data.reason}` : '.'}`;
    finishRun(run, 'cancelled', { note, usage: data.usage, duration_ms: data.duration_ms });
  },
};

function logLine(run, event) {
  const log = $('event-log');
  const box = log.parentElement;
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
  const extra = event.type === 'node_token' ? `+${String(event.data?.text ?? '').length} chars` : (event.attempt ? `attempt ${event.attempt}` : '');
  log.append(h('li', { class: `log-line log-${cssToken(event.type)}` },
    h('span', { class: 'log-seq', text: `#${Number(event.sequence) || event.sequence || '?'}` }),
    h('span', { class: 'log-time', text: clockTime(event.time) }),
    h('span', { class: 'log-type', text: event.type }),
    h('span', { class: 'log-node', text: event.node_id ?? '' }),
    h('span', { class: 'log-extra', text: extra })));
  while (log.childElementCount > MAX_LOG_LINES) log.firstElementChild.remove();
  $('event-count').textContent = `(${run.events})`;
  if (atBottom) box.scrollTop = box.scrollHeight;
}

// ---------------------------------------------------------------- live node table

function addNodeRow(run, node) {
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
function nodeState(run, id, type = '') {
  if (!run.nodes.has(id)) $('node-rows').append(addNodeRow(run, { id: String(id ?? ''), type: type || '?' }));
  return run.nodes.get(id);
}

function setNodeStatus(run, id, status) {
  const node = nodeState(run, id);
  node.status = status;
  const group = state.graphNodes.get(id);
  if (group) {
    group.dataset.status = status;
    group.classList.remove('is-skipped', 'is-interrupted');
    group.querySelector('.node-box').setAttribute('class', `node-box status-${status}`);
  }
  renderRow(run, id);
  updateEdges(run);
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
function markEnded(run, id, label, className) {
  const { row, cells } = run.rows.get(id);
  row.classList.add(className);
  cells.status.textContent = label;
  state.graphNodes.get(id)?.classList.add(className);
}

function appendTokens(node, text) {
  const pre = node.text.parentNode;
  const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;
  node.text.appendData(text);
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

// ---------------------------------------------------------------- start

function init() {
  takeKeyFromFragment();
  state.apiKey = readStoredKey();
  $('api-key-input').value = state.apiKey;
  $('api-key-form').addEventListener('submit', onKeySaved);
  $('error-close').addEventListener('click', hideError);
  $('workflows-refresh').addEventListener('click', () => loadWorkflows());
  $('workflows-more').addEventListener('click', () => loadWorkflows({ more: true }));
  $('run-form').addEventListener('submit', onRunSubmit);
  $('cancel-button').addEventListener('click', cancelRun);
  window.addEventListener('hashchange', () => {
    if (!takeKeyFromFragment()) return;
    $('api-key-input').value = state.apiKey;
    hideError();
    loadWorkflows();
  });
  refreshHealth();
  setInterval(refreshHealth, HEALTH_INTERVAL_MS);
  loadWorkflows();
}

init();
