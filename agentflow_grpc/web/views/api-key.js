// The API key form in the top bar, and a key arriving later in the fragment (`#api_key=…`).

import { $ } from '../lib/dom.js';
import { apiKey, loadKey, storeKey, takeKeyFromFragment } from '../lib/session.js';

/** Fills in the key of this tab; `onChange()` runs after the key was saved or replaced. */
export function initApiKeyForm(onChange) {
  $('api-key-input').value = loadKey();
  $('api-key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    storeKey($('api-key-input').value.trim());
    $('api-key-state').textContent = apiKey() ? 'saved' : 'cleared';
    setTimeout(() => { $('api-key-state').textContent = ''; }, 2_000);
    onChange();
  });
  window.addEventListener('hashchange', () => {
    if (!takeKeyFromFragment()) return;
    $('api-key-input').value = apiKey();
    onChange();
  });
}
