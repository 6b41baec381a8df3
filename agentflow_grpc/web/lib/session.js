// The credential of this browser tab: an API key, or the access token of a person signed in
// through OpenID Connect (lib/sign-in.js), which wins while it is valid. Both are kept in
// sessionStorage (in memory if storage is disabled), never in localStorage; a key may also come
// from the address's fragment (`#api_key=<key>`), which browsers never send.

const KEY_STORAGE = 'agentflow.api_key';
const TOKEN_STORAGE = 'agentflow.access_token';

let currentKey = '';
let currentToken = null; // { token, expiresAt (ms since the epoch) }

export function apiKey() {
  return currentKey;
}

/** The signed-in person's access token, while it is valid; '' otherwise. */
export function accessToken() {
  if (currentToken && currentToken.expiresAt > Date.now()) return currentToken.token;
  return '';
}

export function hasCredential() {
  return Boolean(accessToken() || currentKey);
}

/** The headers that carry this tab's credential. */
export function authHeaders() {
  const token = accessToken();
  if (token) return { authorization: `Bearer ${token}` };
  if (currentKey) return { 'x-api-key': currentKey };
  return {};
}

function read(name) {
  try {
    return sessionStorage.getItem(name);
  } catch {
    return null;
  }
}

function write(name, value) {
  try {
    if (value) sessionStorage.setItem(name, value);
    else sessionStorage.removeItem(name);
  } catch {
    // storage disabled: the credential lives in memory for this page only
  }
}

export function readStoredKey() {
  return read(KEY_STORAGE) ?? currentKey;
}

export function storeKey(key) {
  currentKey = key;
  write(KEY_STORAGE, key);
}

/** Keep the access token of a sign-in, valid for `expiresIn` seconds. */
export function storeToken(token, expiresIn) {
  currentToken = token ? { token, expiresAt: Date.now() + Math.max(0, expiresIn) * 1000 } : null;
  write(TOKEN_STORAGE, currentToken ? JSON.stringify(currentToken) : '');
}

export function signOut() {
  storeToken('', 0);
}

/** `#api_key=<key>`: save the key and take it out of the address bar. */
export function takeKeyFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (!params.has('api_key')) return false;
  storeKey(params.get('api_key').trim());
  history.replaceState(null, '', location.pathname + location.search);
  return true;
}

/** At start: a key in the fragment wins over the stored one; a stored sign-in is restored. */
export function loadKey() {
  takeKeyFromFragment();
  currentKey = readStoredKey();
  try {
    currentToken = JSON.parse(read(TOKEN_STORAGE) ?? 'null');
  } catch {
    currentToken = null;
  }
  return currentKey;
}
