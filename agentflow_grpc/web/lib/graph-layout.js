// The graph's layout (no DOM): columns by longest path from the sources, rows ordered to cut
// crossings, back edges (loops) drawn below; positions in SVG units.

export const GRAPH = { nodeWidth: 164, nodeHeight: 56, colGap: 64, rowGap: 26, pad: 20, loopDrop: 56 };

/** Layers by longest path from the sources, after dropping the back edges a DFS finds. */
export function computeLayout(spec) {
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
