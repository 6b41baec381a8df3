// The run panel's frame: the state pill, the Run/Cancel buttons, the elapsed time and usage, and
// how a run ends (its outputs, its error or a note; nodes left pending or running marked; where
// its time went, the waterfall).

import { $ } from '../lib/dom.js';
import { formatSeconds, formatTokens, usageTitle } from '../lib/format.js';
import { markEnded } from './node-table.js';
import { clearWaterfall, loadWaterfall } from './waterfall.js';

/** Shows the panel for a run that just started and ticks its elapsed time. */
export function openRunPanel(run) {
  clearWaterfall();
  $('run-outputs-block').hidden = true;
  $('run-error').hidden = true;
  $('run-note').hidden = true;
  $('run-panel').classList.remove('is-rejected');
  $('run-panel').hidden = false;
  setRunState('running');
  setRunning(true);
  run.timer = setInterval(() => updateSummary(run), 200);
  updateSummary(run);
}

/** The server refused to start the run. */
export function markRejected(run) {
  run.rejected = true;
  $('run-panel').classList.add('is-rejected');
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

export function finishRun(run, outcome, { error, outputs, usage, duration_ms, note } = {}) {
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
  // The run reported its end, which the server stores first: its record is complete.
  if (run.terminal && !run.rejected) loadWaterfall(run);
}
