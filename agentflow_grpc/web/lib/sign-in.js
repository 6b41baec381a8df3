// Signing a person in through the OpenID Connect issuer the server names (GetSignInConfig):
// the authorization-code flow with PKCE for a public client, by oauth4webapi (no hand-written
// OAuth). The page is the redirect URI: the issuer sends the browser back to it with `?code=`,
// which `finishSignIn` exchanges for an access token for the API's audience.

import * as oauth from './vendor/oauth4webapi.js';
import { api } from './api.js';
import { storeToken } from './session.js';

const FLOW_STORAGE = 'agentflow.sign_in_flow';

/** The server's sign-in settings; null when it takes API keys only. */
export async function signInConfig() {
  const response = await api('/v1/signInConfig', { auth: false });
  const config = await response.json();
  return config.enabled ? config : null;
}

function redirectUri() {
  return `${location.origin}/`;
}

function options(issuer) {
  // An issuer on plain http is allowed on loopback only (a developer's own provider).
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(issuer.hostname);
  return issuer.protocol === 'http:' && loopback ? { [oauth.allowInsecureRequests]: true } : {};
}

async function discover(config) {
  const issuer = new URL(config.issuer);
  const response = await oauth.discoveryRequest(issuer, { ...options(issuer), algorithm: 'oidc' });
  return oauth.processDiscoveryResponse(issuer, response);
}

/** Leave for the issuer's sign-in page; come back to the view the person was on. */
export async function startSignIn(config) {
  const server = await discover(config);
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  sessionStorage.setItem(FLOW_STORAGE, JSON.stringify({ verifier, state, view: location.hash }));
  const url = new URL(server.authorization_endpoint);
  url.searchParams.set('client_id', config.client_id);
  url.searchParams.set('redirect_uri', redirectUri());
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('scope', config.scopes);
  url.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(verifier));
  url.searchParams.set('code_challenge_method', 'S256');
  url.searchParams.set('state', state);
  if (config.audience) url.searchParams.set('resource', config.audience);
  location.assign(url.href);
}

/**
 * Back from the issuer (`?code=…&state=…`, or `?error=…`): exchange the code for a token and
 * keep it. Returns false when the address holds no sign-in answer; throws with the issuer's
 * reason when the sign-in failed.
 */
export async function finishSignIn(config) {
  const here = new URL(location.href);
  if (!here.searchParams.has('code') && !here.searchParams.has('error')) return false;
  const flow = JSON.parse(sessionStorage.getItem(FLOW_STORAGE) ?? 'null');
  sessionStorage.removeItem(FLOW_STORAGE);
  history.replaceState(null, '', location.pathname + (flow?.view ?? ''));
  if (!flow) throw new Error('this sign-in was not started from this tab; sign in again');
  const server = await discover(config);
  const client = { client_id: config.client_id };
  const issuer = new URL(config.issuer);
  const params = oauth.validateAuthResponse(server, client, here, flow.state);
  const response = await oauth.authorizationCodeGrantRequest(
    server, client, oauth.None(), params, redirectUri(), flow.verifier,
    {
      ...options(issuer),
      additionalParameters: config.audience ? { resource: config.audience } : undefined,
    },
  );
  const result = await oauth.processAuthorizationCodeResponse(server, client, response);
  storeToken(result.access_token, result.expires_in ?? 300);
  return true;
}
