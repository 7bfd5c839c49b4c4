// oidc-provider (a real, certified OpenID/OAuth server) issues tokens for the gateway's resource:
// RS256 and ES256 JWT access tokens and opaque tokens, through RFC 8707 resource indicators.
// The gateway must accept each for its own resource, and refuse a token minted for another.
// Usage: node oidc-provider.mjs <portcullis binary> <portcullis-fixture binary>
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import Provider from 'oidc-provider';

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

const clients = ['rs256', 'es256', 'opaque'].map((id) => ({
  client_id: id, client_secret: `${id}-secret`, grant_types: ['client_credentials'],
  redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_basic',
}));
clients.push({ client_id: 'portcullis', client_secret: SECRET, grant_types: [], redirect_uris: [], response_types: [] });

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [rsa, ec] },
  scopes: ['mcp'],
  ttl: { ClientCredentials: 600 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true, allowedPolicy: async (ctx, client) => client.clientId === 'portcullis' },
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

async function token(client, resource) {
  const response = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${client}:${client}-secret`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'mcp', resource }),
  });
  const body = await response.json();
  if (!body.access_token) throw new Error(`no token for ${client}: ${JSON.stringify(body)}`);
  return body.access_token;
}

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
const gateway = spawn(portcullis, ['serve', '--config', join(work, 'gateway.toml')], { stdio: ['ignore', 'pipe', 'inherit'] });
const url = await new Promise((resolve, reject) => {
  gateway.stdout.on('data', (chunk) => {
    const line = chunk.toString().split('\n').find((l) => l.startsWith('listening '));
    if (line) resolve(line.slice('listening '.length).trim());
  });
  gateway.on('exit', (code) => reject(new Error(`gateway exited with ${code}`)));
});

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
} catch (error) {
  console.log(`FAIL setup: ${error.message}`);
  failed++;
} finally {
  gateway.kill('SIGTERM');
  server.close();
}
console.log(`oidc-provider interop: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
