// oidc-provider (a real, certified OpenID/OAuth server) issues tokens for the gateway's resource:
// RS256 and ES256 JWT access tokens and opaque tokens, through RFC 8707 resource indicators.
// The gateway must accept each for its own resource, and refuse a token minted for another.
// Then live entitlements through introspection: a connected session's roles change in the
// provider's data mid-session (its introspection answers change); that session alone is told
// tools/list_changed, its next list omits the tool, and its still-valid token cannot call it.
// Usage: node oidc-provider.mjs <portcullis binary> <portcullis-fixture binary>
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import Provider from 'oidc-provider';
import { clientToken, serve } from './harness.mjs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

const [portcullis, fixture] = process.argv.slice(2);
const RESOURCE = 'http://127.0.0.1/mcp';
const OTHER = 'http://other.example/mcp';
const SECRET = 'gateway-introspection-secret';

const jwk = (type, options) => ({ ...generateKeyPairSync(type, options).privateKey.export({ format: 'jwk' }) });
const rsa = { ...jwk('rsa', { modulusLength: 2048 }), kid: 'rs', alg: 'RS256', use: 'sig' };
const ec = { ...jwk('ec', { namedCurve: 'P-256' }), kid: 'es', alg: 'ES256', use: 'sig' };

const server = createServer();
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const issuer = `http://127.0.0.1:${server.address().port}`;

// The provider's account data: the roles each client's tokens carry, read again at every
// introspection (as a provider backed by a directory would).
const roles = { opaque: ['editor'], other: ['editor'] };

const clients = ['rs256', 'es256', 'opaque', 'other'].map((id) => ({
  client_id: id, client_secret: `${id}-secret`, grant_types: ['client_credentials'],
  redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_basic',
}));
clients.push({ client_id: 'portcullis', client_secret: SECRET, grant_types: [], redirect_uris: [], response_types: [] });

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [rsa, ec] },
  extraTokenClaims: async (ctx, token) => (roles[token.clientId] ? { roles: roles[token.clientId] } : {}),
  scopes: ['mcp'],
  ttl: { ClientCredentials: 600 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      allowedPolicy: async (ctx, client, token) => {
        if (token?.extra && roles[token.clientId]) token.extra = { ...token.extra, roles: roles[token.clientId] };
        return client.clientId === 'portcullis';
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource, client) => ({
        scope: 'mcp',
        audience: resource,
        accessTokenTTL: 600,
        accessTokenFormat: client.clientId === 'opaque' ? 'opaque' : 'jwt',
        jwt: { sign: { alg: client.clientId === 'es256' ? 'ES256' : 'RS256' } },
      }),
    },
  },
});
server.on('request', provider.callback());

const token = (client, resource) => clientToken(issuer, client, resource);

const work = mkdtempSync(join(tmpdir(), 'portcullis-interop-'));
writeFileSync(join(work, 'secret'), SECRET);
writeFileSync(join(work, 'gateway.toml'), `
[server]
listen = "127.0.0.1:0"

[auth]
public_url = "${RESOURCE}"
scopes = ["mcp"]

[[auth.issuer]]
issuer = "${issuer}"
introspection_endpoint = "${issuer}/token/introspection"
client_id = "portcullis"
client_secret_file = "${join(work, 'secret')}"

[policy]
cedar = "permit (principal, action, resource);"

[[upstream]]
name = "fixture"
command = "${fixture}"
args = ["--stdio"]
`);
const { gateway, url } = await serve(portcullis, join(work, 'gateway.toml'));
let live;

async function initialize(accessToken) {
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${accessToken}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'interop', version: '1' } } }),
  });
  await response.text();
  return response;
}

let passed = 0;
let failed = 0;
async function expect(label, accessToken, status, challenge) {
  const response = await initialize(accessToken);
  const header = response.headers.get('www-authenticate') ?? '';
  const ok = response.status === status && (!challenge || header.includes(challenge));
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${label}: HTTP ${response.status}${header ? ` (${header})` : ''}`);
  ok ? passed++ : failed++;
}

try {
  const rs = await token('rs256', RESOURCE);
  const es = await token('es256', RESOURCE);
  const opaque = await token('opaque', RESOURCE);
  const elsewhere = await token('rs256', OTHER);
  const header = (t) => JSON.parse(Buffer.from(t.split('.')[0], 'base64url'));
  if (header(rs).alg !== 'RS256' || header(es).alg !== 'ES256' || opaque.split('.').length === 3) {
    throw new Error('oidc-provider did not issue the token kinds this test needs');
  }
  await expect('RS256 JWT for this resource', rs, 200);
  await expect('ES256 JWT for this resource', es, 200);
  await expect('opaque token for this resource (introspection)', opaque, 200);
  await expect('JWT for another resource', elsewhere, 401, 'invalid_token');
  await expect('tampered JWT', `${rs.slice(0, -4)}AAAA`, 401, 'invalid_token');
  await expect('unknown opaque token', 'not-a-token-this-issuer-made', 401, 'invalid_token');
  await liveRoles();
} catch (error) {
  console.log(`FAIL setup: ${error.message}`);
  failed++;
} finally {
  gateway.kill('SIGTERM');
  live?.kill('SIGTERM');
  server.close();
}
console.log(`oidc-provider interop: ${passed} passed, ${failed} failed`);

function check(label, ok, detail = '') {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${label}${!ok && detail ? `: ${detail}` : ''}`);
  ok ? passed++ : failed++;
}

/** A gateway deciding with policies, introspecting every 500 ms; two sessions, one demoted. */
async function liveRoles() {
  writeFileSync(join(work, 'live.toml'), `
[server]
listen = "127.0.0.1:0"

[auth]
public_url = "${RESOURCE}"
scopes = ["mcp"]

[[auth.issuer]]
issuer = "${issuer}"
introspection_endpoint = "${issuer}/token/introspection"
client_id = "portcullis"
client_secret_file = "${join(work, 'secret')}"
introspection_cache = "500ms"

[policy]
cedar = """
permit (principal in Role::"editor", action == Action::"tool:greet", resource);
permit (principal, action == Action::"tool:fixture_echo", resource);
"""

[[capability]]
tool = "greet"
risk = "read"

[[capability]]
tool = "fixture_echo"
risk = "read"

[[upstream]]
name = "fixture"
command = "${fixture}"
args = ["--stdio"]
`);
  let liveUrl;
  ({ gateway: live, url: liveUrl } = await serve(portcullis, join(work, 'live.toml')));
  const connect = async (clientId) => {
    const accessToken = await token(clientId, RESOURCE);
    const heard = [];
    const client = new Client({ name: `interop-${clientId}`, version: '1' });
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => heard.push(Date.now()));
    await client.connect(new StreamableHTTPClientTransport(new URL(liveUrl), {
      requestInit: { headers: { authorization: `Bearer ${accessToken}` } },
    }));
    return { client, heard };
  };
  const names = async (session) => (await session.client.listTools()).tools.map((t) => t.name);
  const demoted = await connect('opaque');
  const bystander = await connect('other');
  check('live: an editor (roles from introspection) lists greet', (await names(demoted)).includes('greet'));
  await names(bystander);
  const changed = Date.now();
  roles.opaque = [];
  while (demoted.heard.length === 0 && Date.now() - changed < 5000) await new Promise((r) => setTimeout(r, 20));
  const latency = demoted.heard.length ? demoted.heard[0] - changed : null;
  check('live: its role removed in the provider, the session is told list_changed within 5 s',
    latency !== null, 'never told');
  if (latency !== null) console.log(`     (after ${latency} ms, introspection cached 500 ms)`);
  check('live: its next tools/list omits greet', !(await names(demoted)).includes('greet'));
  let refused;
  try {
    const result = await demoted.client.callTool({ name: 'greet', arguments: { name: 'x' } });
    refused = result.isError ? `tool error ${JSON.stringify(result.content)}` : 'ran';
  } catch (error) {
    refused = `${error?.code} ${error?.message}`;
  }
  check('live: greet with the still-valid token is refused', refused.includes('tool not found'), refused);
  await new Promise((r) => setTimeout(r, 1200));
  check('live: the other session (still an editor) heard nothing', bystander.heard.length === 0,
    `${bystander.heard.length} notifications`);
  await demoted.client.close();
  await bystander.client.close();
}
process.exit(failed === 0 ? 0 : 1);
