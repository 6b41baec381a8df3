// The API key of this browser tab: kept in sessionStorage (in memory if storage is disabled),
// or taken from the address's fragment (`#api_key=<key>`), which browsers never send.

const KEY_STORAGE = 'agentflow.api_key';

let currentKey = '';

export function apiKey() {
  return currentKey;
}

export function readStoredKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) ?? '';
  } catch {
    return currentKey;
  }
}

export function storeKey(key) {
  currentKey = key;
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage disabled: the key lives in memory for this page only
  }
}

/** `#api_key=<key>`: save the key and take it out of the address bar. */
export function takeKeyFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (!params.has('api_key')) return false;
  storeKey(params.get('api_key').trim());
  history.replaceState(null, '', location.pathname + location.search);
  return true;
}

/** At start: a key in the fragment wins over the stored one. */
export function loadKey() {
  takeKeyFromFragment();
  currentKey = readStoredKey();
  return currentKey;
}
