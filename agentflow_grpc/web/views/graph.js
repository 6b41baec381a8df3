// The workflow's graph as SVG: nodes and edges drawn from a layout, then coloured by run status.

import { $, cssToken, setProps, svg, truncate } from '../lib/dom.js';
import { GRAPH } from '../lib/graph-layout.js';

let graphNodes = new Map(); // node id → <g>
let graphEdges = []; // {edge, group}

export function renderGraph(layout) {
  const graph = $('workflow-graph');
  const width = Math.max(layout.width, 200);
  setProps(graph, { viewBox: `0 0 ${width} ${layout.height}`, width, height: layout.height });
  const nodeById = new Map(layout.nodes.map((node) => [node.id, node]));
  graphEdges = layout.edges.map((edge) => ({ edge, group: edgeGroup(edge, layout) }));
  graphNodes = new Map(layout.order.map((id) => [id, nodeGroup(nodeById.get(id), layout.positions.get(id))]));
  graph.replaceChildren(
    svg('defs', {}, arrowMarker('arrow', 'arrow'), arrowMarker('arrow-active', 'arrow arrow-active')),
    svg('g', { class: 'edges' }, ...graphEdges.map((item) => item.group)),
    svg('g', { class: 'nodes' }, ...graphNodes.values()),
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

export function nodeLabel(node) {
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

/** The ids of the drawn nodes, in drawing order. */
export function graphNodeIds() {
  return [...graphNodes.keys()];
}

export function setGraphNodeStatus(id, status) {
  const group = graphNodes.get(id);
  if (group) {
    group.dataset.status = status;
    group.classList.remove('is-skipped', 'is-interrupted');
    group.querySelector('.node-box').setAttribute('class', `node-box status-${status}`);
  }
}

/** After the run: `is-skipped` (never started) or `is-interrupted` (still going). */
export function markGraphNodeEnded(id, className) {
  graphNodes.get(id)?.classList.add(className);
}

/** An edge is lit once its source completed and its target started. */
export function updateEdges(statusOf) {
  for (const { edge, group } of graphEdges) {
    const from = statusOf(edge.from);
    const to = statusOf(edge.to);
    const active = from === 'completed' && to !== undefined && to !== 'pending';
    group.classList.toggle('is-active', active);
    group.firstChild.setAttribute('marker-end', active ? 'url(#arrow-active)' : 'url(#arrow)');
  }
}
