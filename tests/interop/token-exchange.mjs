// Token exchange (RFC 8693) with real parts: oidc-provider is the authorization server, with a
// token-exchange grant registered; an upstream MCP server written with the official TypeScript
// SDK accepts only JWTs for its own audience, checked against the provider's keys. Portcullis
// sits in front with `credentials = "token-exchange"`: each caller's calls reach the upstream
// with a token issued for that caller and that upstream, never the caller's own token, never
// another caller's; a refused exchange is a clear denial, recorded.
// Usage: node token-exchange.mjs <portcullis binary>
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import Provider, { errors } from 'oidc-provider';
import { clientToken, serve } from './harness.mjs';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';

const [portcullis] = process.argv.slice(2);
const GATEWAY = 'http://127.0.0.1/mcp';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const SECRET = 'gateway-exchange-secret';

let passed = 0;
let failed = 0;
function check(label, ok, detail = '') {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${label}${!ok && detail ? `: ${detail}` : ''}`);
  ok ? passed++ : failed++;
}

const rsa = { ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), kid: 'rs', alg: 'RS256', use: 'sig' };
const publicKeys = createLocalJWKSet({ keys: [{ kty: rsa.kty, n: rsa.n, e: rsa.e, kid: rsa.kid, alg: rsa.alg, use: rsa.use }] });

const asServer = createServer();
asServer.listen(0, '127.0.0.1');
await once(asServer, 'listening');
const issuer = `http://127.0.0.1:${asServer.address().port}`;

const upstreamServer = createServer();
upstreamServer.listen(0, '127.0.0.1');
await once(upstreamServer, 'listening');
const UPSTREAM = `http://127.0.0.1:${upstreamServer.address().port}/mcp`;

// Callers get tokens for the gateway (client credentials: `sub` is the client id); the
// gateway's client may exchange them, and ask for its own token, at the upstream's audience.
const callers = ['alice', 'bob', 'mallory'];
const clients = callers.map((id) => ({
  client_id: id, client_secret: `${id}-secret`, grant_types: ['client_credentials'],
  redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_basic',
}));
clients.push({
  client_id: 'portcullis', client_secret: SECRET, grant_types: ['client_credentials', TOKEN_EXCHANGE],
  redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_basic',
});

const resourceServer = (resource) => ({
  scope: resource === UPSTREAM ? 'tickets' : 'mcp',
  audience: resource,
  accessTokenTTL: 600,
  accessTokenFormat: 'jwt',
  jwt: { sign: { alg: 'RS256' } },
});
const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [rsa] },
  scopes: ['mcp', 'tickets'],
  // RFC 8693 §4.1: an exchanged token names the party acting for its subject.
  extraTokenClaims: (ctx, token) => (token.gty === 'token_exchange' ? { act: { sub: token.clientId } } : undefined),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => GATEWAY,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => resourceServer(resource),
    },
  },
});

// The exchanges the provider performed, by subject, and the ones it refused.
const exchanges = [];
provider.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
  const { client, params } = ctx.oidc;
  if (params.subject_token_type !== ACCESS_TOKEN) throw new errors.InvalidRequest('unsupported subject_token_type');
  let subject;
  try {
    ({ payload: subject } = await jwtVerify(params.subject_token, publicKeys, { issuer, audience: GATEWAY }));
  } catch {
    throw new errors.InvalidGrant('subject_token is not valid');
  }
  if (params.resource !== UPSTREAM) throw new errors.InvalidTarget('unknown resource');
  // This provider's policy: mallory may not act at the tickets service.
  if (subject.sub === 'mallory') {
    exchanges.push({ sub: subject.sub, refused: true });
    throw new errors.InvalidGrant('this subject may not use the tickets service');
  }
  const token = new provider.AccessToken({
    accountId: subject.sub,
    client,
    gty: 'token_exchange',
    scope: 'tickets',
  });
  token.resourceServer = new provider.ResourceServer(UPSTREAM, resourceServer(UPSTREAM));
  const value = await token.save();
  exchanges.push({ sub: subject.sub, token: value });
  ctx.body = {
    access_token: value,
    issued_token_type: ACCESS_TOKEN,
    token_type: 'Bearer',
    expires_in: token.expiration,
    scope: 'tickets',
  };
}, ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope', 'actor_token', 'actor_token_type']);
asServer.on('request', provider.callback());

// The upstream: only JWTs from this issuer for its own audience; every token it was shown kept.
const seen = [];
upstreamServer.on('request', async (req, res) => {
  const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(token, publicKeys, { issuer, audience: UPSTREAM }));
  } catch {
    seen.push({ token, valid: false });
    res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' }).end();
    return;
  }
  seen.push({ token, valid: true, sub: claims.sub });
  req.auth = { token, clientId: claims.client_id, scopes: (claims.scope ?? '').split(' '), extra: { claims } };
  const server = new McpServer({ name: 'tickets', version: '1.0.0' });
  server.registerTool('whoami', { description: 'Who the tickets service thinks is calling' }, async (extra) => {
    const { sub, aud, act } = extra.authInfo.extra.claims;
    return { content: [{ type: 'text', text: JSON.stringify({ sub, aud, act }) }] };
  });
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  res.on('close', () => { transport.close(); server.close(); });
  await server.connect(transport);
  await transport.handleRequest(req, res);
});

const token = (client) => clientToken(issuer, client, GATEWAY);

const work = mkdtempSync(join(tmpdir(), 'portcullis-exchange-'));
const audit = join(work, 'audit.jsonl');
writeFileSync(join(work, 'secret'), SECRET);
writeFileSync(join(work, 'gateway.toml'), `
[server]
listen = "127.0.0.1:0"

[auth]
public_url = "${GATEWAY}"
scopes = ["mcp"]

[[auth.issuer]]
issuer = "${issuer}"

[policy]
cedar = "permit (principal, action, resource);"

[audit]
jsonl = "${audit}"

[[upstream]]
name = "tickets"
url = "${UPSTREAM}"
credentials = "token-exchange"

[upstream.token_exchange]
issuer = "${issuer}"
client_id = "portcullis"
client_secret_file = "secret"
resource = "${UPSTREAM}"
scopes = ["tickets"]
`);
let gateway;

const connect = async (accessToken) => {
  const client = new Client({ name: 'exchange-interop', version: '1' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { authorization: `Bearer ${accessToken}` } },
  }));
  return client;
};
const whoami = async (client) => {
  const result = await client.callTool({ name: 'whoami', arguments: {} });
  return JSON.parse(result.content[0].text);
};

let url;
try {
  ({ gateway, url } = await serve(portcullis, join(work, 'gateway.toml'), { keep: true }));
  const tokens = { alice: await token('alice'), bob: await token('bob'), mallory: await token('mallory') };

  const own = seen.filter((s) => s.valid && s.sub === 'portcullis');
  check('the gateway\'s own requests (handshake, lists) carry its own token for the upstream', own.length > 0 && seen.every((s) => s.valid),
    JSON.stringify(seen.map((s) => s.sub ?? 'invalid')));

  const alice = await connect(tokens.alice);
  const first = await whoami(alice);
  check('alice\'s call reaches the upstream as alice, for the upstream\'s audience',
    first.sub === 'alice' && first.aud === UPSTREAM && first.act?.sub === 'portcullis', JSON.stringify(first));
  const again = await whoami(alice);
  check('alice\'s second call is alice again', again.sub === 'alice', JSON.stringify(again));
  check('one exchange served both of alice\'s calls (kept until it nears expiry)',
    exchanges.filter((e) => e.sub === 'alice').length === 1, JSON.stringify(exchanges.map((e) => e.sub)));

  const bob = await connect(tokens.bob);
  const bobs = await whoami(bob);
  check('bob\'s call reaches the upstream as bob', bobs.sub === 'bob' && bobs.aud === UPSTREAM, JSON.stringify(bobs));

  const issuedTo = (sub) => new Set(exchanges.filter((e) => e.sub === sub && e.token).map((e) => e.token));
  const shownFor = (sub) => seen.filter((s) => s.valid && s.sub === sub).map((s) => s.token);
  check('the upstream saw alice only with tokens issued for alice, bob only with bob\'s',
    shownFor('alice').length >= 2 && shownFor('alice').every((t) => issuedTo('alice').has(t))
      && shownFor('bob').length >= 1 && shownFor('bob').every((t) => issuedTo('bob').has(t)));
  check('no caller\'s own token reached the upstream',
    !seen.some((s) => Object.values(tokens).includes(s.token)));

  const mallory = await connect(tokens.mallory);
  let refusal;
  try {
    const result = await mallory.callTool({ name: 'whoami', arguments: {} });
    refusal = { ran: true, result };
  } catch (error) {
    refusal = { code: error.code, message: error.message };
  }
  check('a refused exchange reaches the caller as a denial (-31001), not a 500',
    refusal.code === -31001 && /denied/.test(refusal.message), JSON.stringify(refusal));
  check('the upstream never saw mallory', !seen.some((s) => s.sub === 'mallory'));

  await new Promise((r) => setTimeout(r, 300));
  if (process.env.SHOW_AUDIT) console.log(readFileSync(audit, 'utf8'));
  const records = readFileSync(audit, 'utf8').trim().split('\n').map((line) => JSON.parse(line).record);
  const refused = records.find((r) => r.subject === 'mallory' && r.reasons?.includes('upstream_credential_refused'));
  check('the refusal is recorded as a denial, naming the credential kind',
    refused?.decision === 'deny' && refused?.credential === 'token-exchange', JSON.stringify(refused));
  const served = records.filter((r) => r.subject === 'alice' && r.outcome === 'ok');
  check('alice\'s calls are recorded with the credential kind, never a token',
    served.length === 2 && served.every((r) => r.credential === 'token-exchange'));
  const everyToken = [...Object.values(tokens), ...exchanges.filter((e) => e.token).map((e) => e.token), ...own.map((s) => s.token)];
  const written = readFileSync(audit, 'utf8') + gateway.stderrText;
  check('no token appears in the audit trail or the gateway\'s log', !everyToken.some((t) => written.includes(t)));

  await Promise.all([alice.close(), bob.close(), mallory.close()]);
} catch (error) {
  console.log(`FAIL setup: ${error.stack ?? error.message}`);
  failed++;
} finally {
  gateway?.kill('SIGTERM');
  asServer.close();
  upstreamServer.close();
}
console.log(`token-exchange interop: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
