// A live run: the Run button starts ExecuteWorkflow and reads its event stream; each event moves
// the node table, the graph, the event log and the panel. Cancel closes the stream.

import { api, ApiError, GRPC_CODES } from '../lib/api.js';
import { $, truncate } from '../lib/dom.js';
import { hasCredential } from '../lib/session.js';
import { readEventStream } from '../lib/sse.js';
import { state } from '../lib/state.js';
import { hideError, showBanner, showError } from './banner.js';
import { clearLog, logLine } from './event-log.js';
import { graphNodeIds } from './graph.js';
import { addNodeRow, appendTokens, nodeState, setNodeStatus } from './node-table.js';
import { finishRun, markRejected, openRunPanel } from './run-panel.js';
import { clearFieldErrors, markFieldViolations, readInputs } from './run-form.js';

export async function onRunSubmit(event) {
  event.preventDefault();
  if (!state.selected || state.run?.active) return;
  hideError();
  clearFieldErrors();
  if (!hasCredential()) {
    showBanner('Not signed in', 'Sign in, or enter your API key above, before running a workflow.');
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
    await readEventStream(response, (data) => onMessage(run, data));
    if (!run.terminal) {
      finishRun(run, 'interrupted', { note: 'The event stream ended before the run reported its end, so its outcome is unknown.' });
    }
  } catch (error) {
    if (run.finished) return;
    if (error instanceof ApiError) {
      markRejected(run);
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
  graphNodeIds().forEach((id) => setNodeStatus(run, id, 'pending'));
  clearLog();
  openRunPanel(run);
  return run;
}

export function cancelRun() {
  const run = state.run;
  if (!run?.active) return;
  run.controller.abort();
  finishRun(run, 'cancelled', { note: 'Cancelled: the stream was closed, so the server cancels the run.' });
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
