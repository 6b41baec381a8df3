// The health panel: the server's status and version and each dependency's, polled without a key.

import { api } from '../lib/api.js';
import { $, cssToken, h } from '../lib/dom.js';
import { formatMs } from '../lib/format.js';

const HEALTH_INTERVAL_MS = 10_000;
const HEALTH_TIMEOUT_MS = 5_000;

/** Checks now, then every HEALTH_INTERVAL_MS. */
export function watchHealth() {
  refreshHealth();
  setInterval(refreshHealth, HEALTH_INTERVAL_MS);
}

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
