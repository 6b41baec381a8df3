// A real OpenID Provider for AgentFlow's identity tests: the certified `oidc-provider` package,
// configured from one JSON file (tests/support/oidc.py writes it, starts this program and stops
// it with SIGTERM).
//
//   node provider.js CONFIG.json
//
// CONFIG holds:
//   issuer        the issuer identifier; null: http://127.0.0.1:<the port listened on>
//   port          the loopback port to listen on; 0: one the system picks
//   readyFile     where {"issuer", "port"} is written once the provider answers
//   keys          private JWKs, all published; an RSA one is needed (ID tokens are RS256)
//   audience      the resource indicator (and `aud`) of AgentFlow's API; the default resource
//   algorithm     what access tokens are signed with (RS256, ES256, ...)
//   resources     other resource indicators a client may ask tokens for (a wrong audience)
//   clients       oidc-provider client metadata; `token_claims` on a client are added to the
//                 access tokens it gets for itself (client_credentials)
//   users         login -> claims added to the access tokens of that person (the browser flow,
//                 devInteractions: any login and password sign in); `*` for every other login
//
// Access tokens for a resource are JWTs (RFC 9068) signed by the first key for `algorithm`.
// Two test hooks, on every request: `x-clock-offset: SECONDS` shifts the provider's clock for
// that request (tokens issued in the past or the future), and GET /test/requests answers how
// many requests each path has served (to count JWKS fetches).

import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

// The clock each request sees: the real one, shifted by its x-clock-offset header.
const clockOffset = new AsyncLocalStorage();
const realNow = Date.now;
Date.now = () => realNow() + (clockOffset.getStore() ?? 0) * 1000;

const requestCounts = new Map();

// The claims an access token carries beside the standard ones: its person's, or (issued to a
// client for itself) its client's.
function tokenClaims(ctx, token) {
  if (token.accountId) {
    return config.users[token.accountId] ?? config.users['*'] ?? {};
  }
  return ctx.oidc.client?.token_claims ?? {};
}

const server = createServer();
server.listen(config.port, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = config.issuer ?? `http://127.0.0.1:${port}`;
  const resources = new Set([config.audience, ...config.resources]);

  const provider = new Provider(issuer, {
    jwks: { keys: config.keys },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    clients: config.clients,
    extraClientMetadata: { properties: ['token_claims'] },
    findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => config.audience,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, indicator) => {
          if (!resources.has(indicator)) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: 'agentflow',
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: config.algorithm } },
          };
        },
      },
    },
    extraTokenClaims: async (ctx, token) => tokenClaims(ctx, token),
    // The page at AgentFlow's origin calls the token endpoint from the browser.
    clientBasedCORS: () => true,
  });

  provider.use(async (ctx, next) => {
    requestCounts.set(ctx.path, (requestCounts.get(ctx.path) ?? 0) + 1);
    if (ctx.method === 'GET' && ctx.path === '/test/requests') {
      ctx.body = Object.fromEntries(requestCounts);
      return undefined;
    }
    if (ctx.method === 'GET' && ctx.path === '/favicon.ico') {
      ctx.status = 204; // browsers ask on the login pages; a 404 would be a console error
      return undefined;
    }
    const offset = Number(ctx.get('x-clock-offset') || 0);
    return clockOffset.run(offset, next);
  });

  server.on('request', provider.callback());
  const ready = `${config.readyFile}.tmp`;
  writeFileSync(ready, JSON.stringify({ issuer, port }));
  renameSync(ready, config.readyFile);
});

server.on('error', (error) => {
  console.error(`oidc-provider: cannot listen: ${error.message}`);
  process.exit(1);
});
