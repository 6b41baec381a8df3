// The selected workflow: its header, graph and run form replace the "select a workflow" card.

import { $ } from '../lib/dom.js';
import { computeLayout } from '../lib/graph-layout.js';
import { state } from '../lib/state.js';
import { showBanner } from './banner.js';
import { renderGraph } from './graph.js';
import { renderRunForm } from './run-form.js';
import { markSelectedItem } from './workflows.js';

export function selectWorkflow(workflow) {
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
