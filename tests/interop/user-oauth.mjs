// Per-user upstream sign-in (`credentials = "user-oauth"`) with real parts: two oidc-provider
// servers, one the callers' (it signs people in to the gateway's page too), one the upstream's;
// an upstream MCP server written with the official TypeScript SDK that takes only JWTs of its own
// server for its own audience and says so in its 401 (RFC 9728). The gateway finds that server
// from the 401, registers itself there (RFC 7591), and sends a person who has not connected the
// upstream to its page: the TypeScript and Python SDK clients see the URL-mode elicitation
// (-32042); Chromium follows the link, signs in to the gateway and to the upstream's server; the
// call then works with the person's own token, which is sealed on disk, refreshed before it
// expires without the person, and forgotten when the person (on the page) or an operator (the
// CLI) disconnects it.
// Usage: node user-oauth.mjs <portcullis binary> <chromium> <python with the mcp SDK>
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { promisify } from 'node:util';
import Provider from 'oidc-provider';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { chromium } from 'playwright-core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UrlElicitationRequiredError } from '@modelcontextprotocol/sdk/types.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { clientToken, serve } from './harness.mjs';

const [portcullis, browserPath, python] = process.argv.slice(2);
const run = promisify(execFile);
// The upstream's tokens live this long: the gateway refreshes them at half their life.
const UPSTREAM_TOKEN_TTL = 8;

let passed = 0;
let failed = 0;
function check(label, ok, detail = '') {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${label}${!ok && detail ? `: ${detail}` : ''}`);
  ok ? passed++ : failed++;
}

const listen = async (host = '127.0.0.1') => {
  const server = createServer();
  server.listen(0, host);
  await once(server, 'listening');
  return server;
};
const rsaKey = (kid) => ({ ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' });
const publicOf = (key) => createLocalJWKSet({ keys: [{ kty: key.kty, n: key.n, e: key.e, kid: key.kid, alg: key.alg, use: key.use }] });

// The gateway's address is fixed before it starts: its page's links and redirects name it.
const probe = await listen();
const GW_PORT = probe.address().port;
probe.close();
const GW_ORIGIN = `http://127.0.0.1:${GW_PORT}`;
const GATEWAY = `${GW_ORIGIN}/mcp`;

// The callers' server (also the gateway page's sign-in), on 127.0.0.1.
const callersServer = await listen();
const callersIssuer = `http://127.0.0.1:${callersServer.address().port}`;
const callersKey = rsaKey('callers');
const callers = new Provider(callersIssuer, {
  clients: [
    ...['alice', 'bob', 'carol', 'dave'].map((id) => ({
      client_id: id, client_secret: `${id}-secret`, grant_types: ['client_credentials'],
      redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_basic',
    })),
    {
      client_id: 'portcullis-page', token_endpoint_auth_method: 'none', grant_types: ['authorization_code'],
      response_types: ['code'], redirect_uris: [`${GW_ORIGIN}/approvals/callback`],
    },
  ],
  jwks: { keys: [callersKey] },
  scopes: ['mcp'],
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => GATEWAY,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({ scope: 'mcp', audience: GATEWAY, accessTokenTTL: 600, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } }),
    },
  },
});
callersServer.on('request', callers.callback());

// The upstream's own server, on 127.0.0.2 (another host: the browser keeps the two servers'
// cookies apart). Open dynamic registration, refresh tokens, short-lived access tokens.
const upstreamServer = await listen();
const UPSTREAM = `http://127.0.0.1:${upstreamServer.address().port}/mcp`;
const asServer = await listen('127.0.0.2');
const upstreamIssuer = `http://127.0.0.2:${asServer.address().port}`;
const upstreamKey = rsaKey('tickets');
const upstreamKeys = publicOf(upstreamKey);
const tickets = new Provider(upstreamIssuer, {
  clients: [{
    client_id: 'portcullis-own', client_secret: 'portcullis-own-secret', grant_types: ['client_credentials'],
    redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [upstreamKey] },
  scopes: ['tickets'],
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: { RefreshToken: 3600 },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    registration: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => UPSTREAM,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({ scope: 'tickets', audience: UPSTREAM, accessTokenTTL: UPSTREAM_TOKEN_TTL, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } }),
    },
  },
});
const grants = [];
tickets.on('grant.success', (ctx) => grants.push(ctx.oidc.params.grant_type));
const registrations = [];
tickets.on('registration_create.success', (ctx, client) => registrations.push(client.clientId));
asServer.on('request', tickets.callback());

// The upstream MCP server: only this server's JWTs for its own audience, and not those revoked
// there; every token it saw kept.
const seen = [];
const revokedThere = new Set();
const metadataPath = '/.well-known/oauth-protected-resource/mcp';
upstreamServer.on('request', async (req, res) => {
  if (req.url === metadataPath) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ resource: UPSTREAM, authorization_servers: [upstreamIssuer], scopes_supported: ['tickets'] }));
    return;
  }
  const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(token, upstreamKeys, { issuer: upstreamIssuer, audience: UPSTREAM }));
    if (revokedThere.has(token)) throw new Error('revoked');
  } catch {
    seen.push({ token, valid: false });
    const origin = new URL(UPSTREAM).origin;
    res.writeHead(401, { 'www-authenticate': `Bearer resource_metadata="${origin}${metadataPath}"` }).end();
    return;
  }
  seen.push({ token, valid: true, sub: claims.sub });
  req.auth = { token, clientId: claims.client_id, scopes: (claims.scope ?? '').split(' '), extra: { claims } };
  const server = new McpServer({ name: 'tickets', version: '1.0.0' });
  server.registerTool('whoami', { description: 'Who the tickets service thinks is calling' }, async (extra) => {
    const { sub, aud, scope } = extra.authInfo.extra.claims;
    return { content: [{ type: 'text', text: JSON.stringify({ sub, aud, scope, token: extra.authInfo.token }) }] };
  });
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  res.on('close', () => { transport.close(); server.close(); });
  await server.connect(transport);
  await transport.handleRequest(req, res);
});

const work = mkdtempSync(join(tmpdir(), 'portcullis-user-oauth-'));
const audit = join(work, 'audit.jsonl');
const config = join(work, 'gateway.toml');
writeFileSync(join(work, 'connections.key'), randomBytes(32).toString('base64'));
// The gateway's own requests there (its handshake, learning the tool list) carry its own token.
const ownToken = await (async () => {
  const response = await fetch(`${upstreamIssuer}/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from('portcullis-own:portcullis-own-secret').toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'tickets', resource: UPSTREAM }),
  });
  return (await response.json()).access_token;
})();
writeFileSync(join(work, 'own-token'), ownToken);
writeFileSync(config, `
[server]
listen = "127.0.0.1:${GW_PORT}"

[auth]
public_url = "${GATEWAY}"
scopes = ["mcp"]

[[auth.issuer]]
issuer = "${callersIssuer}"

[consent]
client_id = "portcullis-page"

[policy]
cedar = """
permit (principal, action, resource);
// Carol's tenant forbids delegation: she may not use services that take her own account.
forbid (principal, action, resource)
when { context.credential == "user-oauth" && principal.subject == "carol" };
// Dave may use such a service only once he has connected it (he is refused, not sent the link).
forbid (principal, action, resource)
when { context.credential == "user-oauth" && !context.connected && principal.subject == "dave" };
"""

[audit]
jsonl = "${audit}"

[connections]
key_file = "connections.key"

[[upstream]]
name = "tickets"
url = "${UPSTREAM}"
credential_file = "own-token"
credentials = "user-oauth"
`);

const sdkClient = async (accessToken) => {
  const client = new Client({ name: 'user-oauth-interop', version: '1' }, { capabilities: { elicitation: { form: {}, url: {} } } });
  await client.connect(new StreamableHTTPClientTransport(new URL(GATEWAY), {
    requestInit: { headers: { authorization: `Bearer ${accessToken}` } },
  }));
  return client;
};
const whoami = async (client) => {
  try {
    const result = await client.callTool({ name: 'whoami', arguments: {} });
    return { ran: JSON.parse(result.content[0].text) };
  } catch (error) {
    return { error };
  }
};
/** tools/call whoami as a 2026-07-28 request without a session, declaring `capabilities`. */
const statelessCall = async (accessToken, capabilities) => {
  const response = await fetch(GATEWAY, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${accessToken}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream',
      'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'whoami',
    },
    body: JSON.stringify({
      jsonrpc: '2.0', id: 1, method: 'tools/call',
      params: { name: 'whoami', arguments: {}, _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': capabilities } },
    }),
  });
  const text = await response.text();
  const line = text.split('\n').filter((l) => l.startsWith('data:')).pop() ?? `data:${text}`;
  return JSON.parse(line.slice(5));
};
const records = () => readFileSync(audit, 'utf8').trim().split('\n').filter(Boolean).map((line) => JSON.parse(line).record);
const settle = () => new Promise((r) => setTimeout(r, 300));

/** Follow the gateway's connect link in the browser: sign in where asked, consent, land back. */
async function connectInBrowser(page, link, { gatewayLogin, upstreamLogin }) {
  await page.goto(link);
  for (let step = 0; step < 8; step++) {
    const here = new URL(page.url());
    if (here.origin === GW_ORIGIN) break;
    const login = page.locator('input[name=login]');
    if (await login.count()) {
      await login.fill(here.origin === callersIssuer ? gatewayLogin : upstreamLogin);
      await page.locator('input[name=password]').fill('any');
    }
    await Promise.all([page.waitForNavigation(), page.locator('button[type=submit]').first().click()]);
  }
  return { url: page.url(), text: await page.locator('body').innerText() };
}

let gateway;
let browser;
try {
  ({ gateway } = await serve(portcullis, config, { keep: true }));
  const tokens = { alice: await clientToken(callersIssuer, 'alice', GATEWAY), bob: await clientToken(callersIssuer, 'bob', GATEWAY) };
  const connectLink = `${GW_ORIGIN}/approvals/connect?upstream=tickets`;

  // 1. Not connected: the SDKs see the URL-mode elicitation; other clients get the link.
  const alice = await sdkClient(tokens.alice);
  const listed = await alice.listTools();
  check('a person not yet connected still sees the upstream\'s tools (listed with the gateway\'s own token)',
    listed.tools.some((t) => t.name === 'whoami'), JSON.stringify(listed.tools.map((t) => t.name)));
  const first = await whoami(alice);
  const elicitation = first.error instanceof UrlElicitationRequiredError ? first.error.elicitations[0] : undefined;
  check('TypeScript SDK: the first call is a URL-mode elicitation (-32042) to the gateway\'s connect page',
    elicitation?.mode === 'url' && elicitation.url === connectLink && typeof elicitation.elicitationId === 'string',
    JSON.stringify({ code: first.error?.code, data: first.error?.data, ran: first.ran }));
  const py = JSON.parse((await run(python, [join(import.meta.dirname, 'user_oauth_python.py'), GATEWAY, tokens.alice], { timeout: 60_000 })).stdout);
  check('Python SDK: the first call is a URL-mode elicitation (-32042) to the same page',
    py.code === -32042 && py.elicitations?.[0]?.mode === 'url' && py.elicitations[0].url === connectLink, JSON.stringify(py));
  const plain = await statelessCall(tokens.alice, {});
  check('a client that does not take URL elicitation gets an error with the link instead (-31002)',
    plain.error?.code === -31002 && plain.error.message.includes(connectLink) && plain.error.data?.url === connectLink, JSON.stringify(plain));
  check('nothing reached the upstream on alice\'s behalf before she connected',
    !seen.some((s) => s.valid && s.sub !== 'portcullis-own'), JSON.stringify(seen.map((s) => s.sub)));

  // Policies read the credential kind and whether the caller connected: denials, not links.
  for (const [who, label] of [['carol', 'a policy on the credential kind (user-oauth) denies carol: -31001, no link'],
    ['dave', 'a policy on `context.connected` denies dave, not connected: -31001, no link']]) {
    const client = await sdkClient(await clientToken(callersIssuer, who, GATEWAY));
    const answer = await whoami(client);
    check(label, answer.error?.code === -31001 && !JSON.stringify(answer.error?.data ?? {}).includes('connect'),
      JSON.stringify({ code: answer.error?.code, data: answer.error?.data, ran: answer.ran }));
    await client.close();
  }

  // 2. The person follows the link in a browser: signs in to the gateway, then to the service.
  browser = await chromium.launch({ executablePath: browserPath, args: ['--no-sandbox'] });
  const page = await (await browser.newContext()).newPage();
  const landed = await connectInBrowser(page, elicitation?.url ?? connectLink, { gatewayLogin: 'alice', upstreamLogin: 'alice-at-tickets' });
  check('the browser signs in to the gateway and to the upstream\'s server, and lands on "Connected"',
    landed.url.startsWith(`${GW_ORIGIN}/approvals/connect/tickets/callback`) && /tickets is connected/.test(landed.text), `${landed.url}: ${landed.text}`);

  check('the gateway registered itself at the upstream\'s server once (dynamic registration)',
    registrations.length === 1, JSON.stringify(registrations));
  const second = await whoami(alice);
  check('the retried call runs with alice\'s own token at the upstream (its sub, its audience)',
    second.ran?.sub === 'alice-at-tickets' && second.ran.aud === UPSTREAM, JSON.stringify(second.ran ?? second.error?.message));
  const aliceToken = second.ran?.token;
  check('that token was issued by the authorization code grant, not passed through',
    grants.includes('authorization_code') && aliceToken && aliceToken !== tokens.alice, JSON.stringify(grants));

  // 3. Never anyone else's: bob is asked to connect, and the upstream never sees alice's token for him.
  const bob = await sdkClient(tokens.bob);
  const bobs = await whoami(bob);
  check('bob, not connected, is asked to connect: he never gets alice\'s token',
    bobs.error?.code === -32042 && !seen.some((s) => s.sub === 'bob'), JSON.stringify(bobs.ran ?? bobs.error?.message));

  // 4. Sealed at rest.
  const onDisk = readFileSync(join(work, 'connections.db'));
  check('the token on disk is not readable as plaintext (nor any part of it)',
    aliceToken && !onDisk.includes(aliceToken) && !onDisk.includes(aliceToken.split('.')[1]) && !onDisk.includes(aliceToken.split('.')[2]));

  // 5. Refreshed before it expires, without the person.
  const authorizations = grants.filter((g) => g === 'authorization_code').length;
  await new Promise((r) => setTimeout(r, (UPSTREAM_TOKEN_TTL / 2 + 1) * 1000));
  const third = await whoami(alice);
  check('past half its life the token is refreshed before use (refresh_token grant), no browser involved',
    third.ran?.sub === 'alice-at-tickets' && third.ran.token !== aliceToken && grants.includes('refresh_token')
      && grants.filter((g) => g === 'authorization_code').length === authorizations,
    JSON.stringify({ grants, ran: third.ran?.sub, error: third.error?.message }));
  const fourth = await whoami(alice);
  check('the refreshed token is kept and used again (one refresh)',
    fourth.ran?.token === third.ran?.token && grants.filter((g) => g === 'refresh_token').length === 1, JSON.stringify(grants));

  // 6. The person disconnects on the "connected services" page: the next call asks again.
  await page.goto(`${GW_ORIGIN}/approvals/connections`);
  const listedOnPage = await page.locator('body').innerText();
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Disconnect tickets' }).click()]);
  const afterRevoke = await page.locator('body').innerText();
  check('the connected services page lists tickets and disconnects it',
    /tickets/.test(listedOnPage) && /no longer connected/.test(afterRevoke), afterRevoke);
  const fifth = await whoami(alice);
  check('after disconnecting, the next call asks to connect again', fifth.error?.code === -32042, JSON.stringify(fifth.ran ?? fifth.error?.message));

  // 7. An operator disconnects: connect again, then `portcullis connections revoke`.
  const again = await connectInBrowser(page, connectLink, { gatewayLogin: 'alice', upstreamLogin: 'alice-at-tickets' });
  const sixth = await whoami(alice);
  const listedByOperator = (await run(portcullis, ['connections', 'list', '--config', config])).stdout;
  const revoked = (await run(portcullis, ['connections', 'revoke', '--config', config, '--subject', 'alice', '--upstream', 'tickets'])).stdout;
  const seventh = await whoami(alice);
  check('`portcullis connections list` names the connection and `revoke` ends it: the next call asks again',
    /tickets is connected/.test(again.text) && sixth.ran?.sub === 'alice-at-tickets'
      && listedByOperator.includes(`${callersIssuer}\talice\ttickets`) && /disconnected 1 connection/.test(revoked) && seventh.error?.code === -32042,
    JSON.stringify({ again: again.text, sixth: sixth.ran?.sub, listedByOperator, revoked, seventh: seventh.error?.message }));

  // 8. The service revokes the person's token on its side: the gateway's next call with it is
  // refused there (401), the connection ends, and the person is asked to connect again.
  await connectInBrowser(page, connectLink, { gatewayLogin: 'alice', upstreamLogin: 'alice-at-tickets' });
  const beforeRevocation = await whoami(alice);
  if (beforeRevocation.ran?.token) revokedThere.add(beforeRevocation.ran.token);
  const afterRevocation = await whoami(alice);
  const listedAfter = (await run(portcullis, ['connections', 'list', '--config', config])).stdout;
  check('a token the service refuses (revoked there) ends the connection: the next call is the link again',
    beforeRevocation.ran?.sub === 'alice-at-tickets' && afterRevocation.error?.code === -32042
      && !listedAfter.includes(`\talice\ttickets`),
    JSON.stringify({ before: beforeRevocation.ran?.sub, after: afterRevocation.error?.code, listedAfter }));

  // 9. The audit trail: every step recorded, the credential kind named, no token anywhere.
  await settle();
  const all = records();
  const asked = all.filter((r) => r.subject === 'alice' && r.reasons?.includes('upstream_connection_required'));
  const ran = all.filter((r) => r.subject === 'alice' && r.outcome === 'ok' && r.capability === 'whoami');
  const listedRecord = all.find((r) => r.subject === 'alice' && r.method === 'tools/list' && r.outcome === 'ok');
  const pageRecords = all.filter((r) => r.method === 'connections/page' && r.subject === 'alice').map((r) => r.reasons?.[0]);
  check('each "connect first" answer is a recorded denial; each call that ran names the credential kind',
    asked.length >= 4 && asked.every((r) => r.decision === 'deny' && r.credential === 'user-oauth')
      && ran.length >= 4 && ran.every((r) => r.credential === 'user-oauth') && listedRecord?.credential === 'gateway',
    JSON.stringify({ asked: asked.map((r) => [r.decision, r.credential]), ran: ran.map((r) => r.credential), list: listedRecord?.credential }));
  check('connecting and disconnecting on the page are recorded',
    pageRecords.filter((r) => r === 'upstream_connected').length === 3 && pageRecords.includes('upstream_disconnected'), JSON.stringify(pageRecords));
  const rejected = all.find((r) => r.subject === 'alice' && r.reasons?.includes('upstream_connection_rejected'));
  check('the refused token is recorded as a denial naming the credential kind',
    rejected?.decision === 'deny' && rejected?.credential === 'user-oauth', JSON.stringify(rejected));
  const everyToken = [...Object.values(tokens), ownToken, ...seen.filter((s) => s.valid).map((s) => s.token)];
  const written = readFileSync(audit, 'utf8') + gateway.stderrText;
  check('no token (the callers\', the gateway\'s, the upstream\'s) appears in the audit trail or the log',
    everyToken.length > 3 && !everyToken.some((t) => written.includes(t)));

  await Promise.all([alice.close(), bob.close()]);
} catch (error) {
  console.log(`FAIL setup: ${error.stack ?? error.message}`);
  failed++;
} finally {
  await browser?.close();
  gateway?.kill('SIGTERM');
  callersServer.close();
  asServer.close();
  upstreamServer.close();
}
console.log(`user-oauth interop: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
