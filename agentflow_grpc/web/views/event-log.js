// The run's event log: one line per event (sequence, time, type, node), the newest MAX_LOG_LINES.

import { $, cssToken, h } from '../lib/dom.js';
import { clockTime } from '../lib/format.js';

const MAX_LOG_LINES = 2_000;

export function clearLog() {
  $('event-log').replaceChildren();
  $('event-count').textContent = '';
}

export function logLine(run, event) {
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
