// Copied from shared/peers/oidc-provider.mjs (the peer configuration the team verified); started by
// the tests as `node oidc-provider.mjs PORT`.
// Minimal oidc-provider (panva) peer on 127.0.0.1 with auto-approving interactions.
// node op.mjs [port]
import Provider from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import LRU from 'oidc-provider/lib/helpers/lru.js';
import { createRemoteJWKSet, jwtVerify } from 'jose'; // oidc-provider's own dependency

const PORT = Number(process.argv[2] || 3000);
const ISSUER = `http://127.0.0.1:${PORT}`;
const API = 'https://api.example.test'; // resource indicator: an identifier only, never contacted
// authplug addition: OIDC_STORE_SIZE enlarges the built-in memory adapter's LRU (1000 objects,
// about 150 grants) so that a benchmark can hold 10,000 live grants. Same adapter code otherwise.
const STORE_SIZE = Number(process.env.OIDC_STORE_SIZE || 0);
const storage = STORE_SIZE > 0 ? new LRU({ maxSize: STORE_SIZE }) : undefined;
// authplug addition: OIDC_EXTRA_CLIENTS (a JSON list of client metadata) registers more clients,
// e.g. client-credentials clients with client_secret_post or private_key_jwt and the test's JWKS;
// OIDC_ACCESS_TOKEN_TTL (seconds, default 300) shortens access tokens so tests see them expire.
const EXTRA_CLIENTS = JSON.parse(process.env.OIDC_EXTRA_CLIENTS || '[]');
const TTL = Number(process.env.OIDC_ACCESS_TOKEN_TTL || 300);
// OIDC_ACCESS_TOKEN_FORMAT=opaque issues opaque access tokens (JWTs cannot be introspected or
// revoked at this server), for tests of revocation that introspect them afterwards.
const AT_FORMAT = process.env.OIDC_ACCESS_TOKEN_FORMAT || 'jwt';

const provider = new Provider(ISSUER, {
  ...(storage ? { adapter: (model) => new MemoryAdapter(model, storage) } : {}),
  clients: [
    { // confidential web client (HubSpot/Zoho-like): code + PKCE + refresh + client_credentials
      client_id: 'app', client_secret: 'app-secret',
      redirect_uris: ['http://127.0.0.1:8765/callback'],
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic', // or client_secret_post
      scope: 'openid offline_access crm.read crm.write',
    },
    { // authplug addition: a native app (RFC 8252), whose loopback redirect may use any port, as
      // `authplug connect --port` does; lets tests listen on free ports side by side
      client_id: 'native', client_secret: 'native-secret', application_type: 'native',
      redirect_uris: ['http://127.0.0.1/callback', 'http://127.0.0.1/v1/onboarding/callback'],
      grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    { // public client (PKCE mandatory, RT always rotated)
      client_id: 'cli', token_endpoint_auth_method: 'none',
      redirect_uris: ['http://127.0.0.1:8765/callback'],
      grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
    },
    ...EXTRA_CLIENTS,
  ],
  pkce: { required: () => true },                 // PKCE for every client
  scopes: ['openid', 'offline_access', 'crm.read', 'crm.write'],
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'), // RT without offline_access
  rotateRefreshToken: true,                        // every refresh returns a new RT, old one is consumed
  ttl: { AccessToken: TTL, AuthorizationCode: 60, RefreshToken: 86400, ClientCredentials: TTL, Grant: 86400, Session: 86400, Interaction: 600, IdToken: 300 },
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id, email: `${id}@example.test` }) }),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => API,
      useGrantedResource: async () => true,
      getResourceServerInfo: async () => ({ scope: 'crm.read crm.write', audience: API, accessTokenTTL: TTL, accessTokenFormat: AT_FORMAT, jwt: { sign: { alg: 'RS256' } } }),
    },
  },
  cookies: { keys: ['test-cookie-key-not-secret'] },
});

// Auto-approve: any /interaction/:uid logs in "alice" and grants what was asked. No HTML, no forms.
provider.use(async (ctx, next) => {
  const m = ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (!m) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params, session } = details;
  const accountId = session?.accountId || 'alice';
  const result = {};
  if (prompt.name === 'login') result.login = { accountId };
  const grant = details.grantId ? await provider.Grant.find(details.grantId) : new provider.Grant({ accountId, clientId: params.client_id });
  if (params.scope) grant.addOIDCScope(params.scope.split(' ').filter((s) => ['openid', 'offline_access'].includes(s)).join(' '));
  grant.addResourceScope(params.resource || API, 'crm.read crm.write');
  result.consent = { grantId: await grant.save() };
  const to = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  ctx.status = 303; ctx.redirect(to);
});

// authplug addition: GET /api/me, the API a connector calls with its access token (what
// `authplug verify` sends): 200 with the token's subject for a live access token of this server
// (a JWT checked against its keys, issuer and audience; an opaque one looked up), 401 otherwise.
const KEYS = createRemoteJWKSet(new URL(`${ISSUER}/jwks`));
provider.use(async (ctx, next) => {
  if (ctx.path !== '/api/me') return next();
  const token = (ctx.get('authorization').match(/^Bearer (.+)$/) || [])[1];
  let sub;
  if (token && token.split('.').length === 3) {
    sub = await jwtVerify(token, KEYS, { issuer: ISSUER, audience: API }).then((r) => r.payload.sub || r.payload.client_id, () => undefined);
  } else if (token) {
    const found = await provider.AccessToken.find(token).catch(() => undefined)
      || await provider.ClientCredentials.find(token).catch(() => undefined);
    sub = found && !found.isExpired ? (found.accountId || found.clientId) : undefined;
  }
  ctx.type = 'application/json';
  if (!sub) {
    ctx.status = 401;
    ctx.set('WWW-Authenticate', 'Bearer error="invalid_token"');
    ctx.body = { error: 'invalid_token' };
    return;
  }
  ctx.body = { sub };
});

provider.listen(PORT, '127.0.0.1', () => console.log(`oidc-provider ${ISSUER} ready`));
