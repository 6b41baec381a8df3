// The error banner under the top bar: what failed, the server's message, field violations and
// the request id to quote.

import { ApiError } from '../lib/api.js';
import { $, h } from '../lib/dom.js';

export function showError(error, context) {
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

export function showBanner(title, message, violations = [], requestId = '') {
  $('error-title').textContent = title;
  $('error-message').textContent = message;
  $('error-violations').replaceChildren(...violations.map((violation) => h('li', {},
    h('code', { text: violation.field ?? '' }),
    h('span', { text: ` ${violation.description ?? ''}` }),
    violation.reason ? h('span', { class: 'muted', text: ` (${violation.reason})` }) : null)));
  $('error-request').textContent = requestId ? `request id ${requestId}` : '';
  $('error-banner').hidden = false;
}

export function hideError() {
  $('error-banner').hidden = true;
}
