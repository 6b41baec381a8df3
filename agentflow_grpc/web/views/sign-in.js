// Sign in / sign out in the top bar, shown when the server names an OpenID Connect issuer; and,
// once signed in, who the page calls the API as (IdentityService.GetCaller).

import { api } from '../lib/api.js';
import { $ } from '../lib/dom.js';
import { accessToken, signOut } from '../lib/session.js';
import { finishSignIn, signInConfig, startSignIn } from '../lib/sign-in.js';
import { showBanner, showError } from './banner.js';

async function showCaller() {
  const signedIn = Boolean(accessToken());
  $('sign-in-button').hidden = signedIn;
  $('sign-out-button').hidden = !signedIn;
  $('signed-in-as').textContent = '';
  if (!signedIn) return;
  try {
    const caller = await (await api('/v1/caller')).json();
    $('signed-in-as').textContent = `${caller.actor.replace(/^oidc:.*#/, '')} · ${caller.tenant} · ${caller.role}`;
  } catch (error) {
    showError(error, 'Signing in');
  }
}

/** `onChange()` runs once the tab's credential changed (signed in or out). */
export async function initSignIn(onChange) {
  let config;
  try {
    config = await signInConfig();
  } catch {
    return; // the server is not reachable yet; the health panel says so
  }
  if (!config) return;
  $('sign-in').hidden = false;
  $('sign-in-button').addEventListener('click', () => {
    startSignIn(config).catch((error) => showBanner('Signing in failed', error.message));
  });
  $('sign-out-button').addEventListener('click', () => {
    signOut();
    showCaller();
    onChange();
  });
  try {
    if (await finishSignIn(config)) onChange();
  } catch (error) {
    showBanner('Signing in failed', error.message);
  }
  await showCaller();
}
