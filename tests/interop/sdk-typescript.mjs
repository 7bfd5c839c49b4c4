// The official TypeScript MCP SDK completes the whole OAuth flow against `portcullis demo` by itself:
// 401 challenge, protected resource metadata, authorization server metadata, dynamic client
// registration, PKCE (S256) authorization request with an RFC 8707 resource indicator, the login
// page walked headless as identity `editor-a`, the code exchange, then MCP calls with the token.
// Then consent (2025-11-25): `send_email` needs a person's approval, which the gateway asks for
// with an elicitation the SDK's handler answers; approved it runs, declined it does not. The SDK
// does not step up to `email:send` by itself while it holds a refresh token (see the closing
// notes), so that part uses a token from `portcullis token --as editor-a --scope email:send`.
// Usage: node sdk-typescript.mjs MCP_URL PORTCULLIS_BIN DATA_DIR
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const NAME = 'typescript-sdk';
const IDENTITY = 'editor-a';
const REDIRECT_URL = 'http://127.0.0.1:47613/callback';

const [mcpUrl, portcullis, dataDir] = process.argv.slice(2);
if (!mcpUrl || !portcullis || !dataDir) {
  console.error('usage: node sdk-typescript.mjs MCP_URL PORTCULLIS_BIN DATA_DIR');
  process.exit(2);
}

let passed = 0;
let failed = 0;
function check(description, ok, detail = '') {
  if (ok) {
    console.log(`ok   ${description}`);
    passed++;
  } else {
    console.log(`FAIL ${description}${detail ? `: ${detail}` : ''}`);
    failed++;
  }
  return ok;
}
function finish() {
  console.log(`${NAME} interop: ${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

// A hung flow is a failure, not a hung CI run.
setTimeout(() => {
  check('flow finished within 120 s', false, 'timed out');
  finish();
}, 120_000);

// Every request the SDK makes (transport and OAuth alike) goes through this fetch, so the script can
// look at what went over the wire without changing it.
const exchanges = [];
async function recordingFetch(input, init = {}) {
  const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
  const method = (init.method ?? 'GET').toUpperCase();
  const body = typeof init.body === 'string' || init.body instanceof URLSearchParams ? String(init.body) : undefined;
  const response = await fetch(input, init);
  exchanges.push({ method, url, body, status: response.status, wwwAuthenticate: response.headers.get('www-authenticate') });
  return response;
}

const decodeEntities = (text) =>
  text
    .replace(/&#x([0-9a-f]+);/gi, (_, hex) => String.fromCodePoint(parseInt(hex, 16)))
    .replace(/&#([0-9]+);/g, (_, dec) => String.fromCodePoint(parseInt(dec, 10)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');

function attributes(tag) {
  const out = {};
  const pattern = /([A-Za-z_:][-A-Za-z0-9_:.]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))/g;
  for (const m of tag.matchAll(pattern)) {
    out[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return out;
}

function parseLoginPage(html) {
  const formTag = html.match(/<form\b[^>]*>/i)?.[0];
  const form = formTag ? attributes(formTag) : undefined;
  const hidden = [];
  for (const [tag] of html.matchAll(/<input\b[^>]*>/gi)) {
    const a = attributes(tag);
    if ((a.type ?? '').toLowerCase() === 'hidden' && a.name !== undefined) hidden.push([a.name, a.value ?? '']);
  }
  const identities = [];
  for (const [tag] of html.matchAll(/<button\b[^>]*>/gi)) {
    const a = attributes(tag);
    if (a.name === 'identity' && a.value !== undefined) identities.push(a.value);
  }
  return { form, hidden, identities };
}

const jwtParts = (token) => {
  const [header, payload] = token.split('.').slice(0, 2).map((p) => JSON.parse(Buffer.from(p, 'base64url').toString()));
  return { header, payload };
};
const s256 = (verifier) => createHash('sha256').update(verifier).digest('base64url');

// The OAuthClientProvider: in-memory storage, and a redirectToAuthorization that plays the user at
// the login page instead of opening a browser.
class HeadlessProvider {
  constructor() {
    this.stored = {};
    this.authorizations = [];
    this.code = undefined;
    // State carries every character the login page has to HTML-escape, and the redirect has to
    // percent-encode, so both round trips are exercised (all are VSCHARs, RFC 6749 appendix A.5).
    this.sentState = undefined;
  }
  get redirectUrl() {
    return REDIRECT_URL;
  }
  get clientMetadata() {
    return {
      client_name: 'Portcullis interop (TypeScript SDK)',
      redirect_uris: [REDIRECT_URL],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state() {
    this.sentState = `${randomBytes(12).toString('base64url')}.&<>"'`;
    return this.sentState;
  }
  clientInformation() {
    return this.stored.clientInformation;
  }
  saveClientInformation(info) {
    this.stored.clientInformation = info;
  }
  tokens() {
    return this.stored.tokens;
  }
  saveTokens(tokens) {
    this.stored.tokens = tokens;
  }
  saveCodeVerifier(verifier) {
    this.stored.codeVerifier = verifier;
  }
  codeVerifier() {
    return this.stored.codeVerifier;
  }
  saveDiscoveryState(state) {
    this.stored.discovery = state;
  }
  discoveryState() {
    return this.stored.discovery;
  }
  invalidateCredentials(scope) {
    if (scope === 'all' || scope === 'client') delete this.stored.clientInformation;
    if (scope === 'all' || scope === 'tokens') delete this.stored.tokens;
    if (scope === 'all' || scope === 'verifier') delete this.stored.codeVerifier;
    if (scope === 'all' || scope === 'discovery') delete this.stored.discovery;
  }
  async redirectToAuthorization(authorizationUrl) {
    this.authorizations.push(new URL(authorizationUrl));
    this.code = await walkLoginPage(new URL(authorizationUrl), this);
  }
}

async function walkLoginPage(authorizationUrl, provider) {
  const params = authorizationUrl.searchParams;
  const resourceMetadata = provider.stored.discovery?.resourceMetadata;
  const issuer = provider.stored.discovery?.authorizationServerMetadata?.issuer;
  check('authorization request carries the RFC 8707 resource indicator from the protected resource metadata',
    params.get('resource') !== null && params.get('resource') === resourceMetadata?.resource && params.get('resource') === mcpUrl,
    `resource=${params.get('resource')}, metadata resource=${resourceMetadata?.resource}, MCP URL=${mcpUrl}`);
  check('authorization request uses PKCE with S256',
    params.get('code_challenge_method') === 'S256' && /^[A-Za-z0-9_-]{43}$/.test(params.get('code_challenge') ?? ''),
    `code_challenge_method=${params.get('code_challenge_method')}, code_challenge=${params.get('code_challenge')}`);
  check('authorization request asks for the scope the 401 challenge named',
    (params.get('scope') ?? '').split(' ').includes('policies:read'), `scope=${params.get('scope')}`);

  const page = await fetch(authorizationUrl, { redirect: 'manual' });
  const html = await page.text();
  if (!check('GET /authorize renders the login page', page.status === 200 && /<form\b/i.test(html),
    `HTTP ${page.status} ${page.headers.get('location') ?? html.slice(0, 200)}`)) {
    throw new Error('no login page');
  }
  const { form, hidden, identities } = parseLoginPage(html);
  const action = new URL(form?.action ?? '', authorizationUrl);
  check('login form posts to /authorize on the authorization server',
    (form?.method ?? '').toLowerCase() === 'post' && action.pathname === '/authorize' && action.origin === authorizationUrl.origin,
    `form ${JSON.stringify(form)}`);
  const hiddenMap = new Map(hidden);
  const mismatched = [...params].filter(([name, value]) => hiddenMap.get(name) !== value).map(([name]) => name);
  check('login form carries every authorization request parameter, HTML-escaped and intact',
    mismatched.length === 0, `missing or altered: ${mismatched.join(', ')}`);
  check(`login page offers identity ${IDENTITY}`, identities.includes(IDENTITY), `identities: ${identities.join(', ')}`);

  const body = new URLSearchParams(hidden);
  body.set('identity', IDENTITY);
  const answer = await fetch(action, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body,
    redirect: 'manual',
  });
  await answer.arrayBuffer();
  const location = answer.headers.get('location');
  const back = location ? new URL(location, action) : undefined;
  if (!check('login answers 302 to the redirect URI',
    answer.status === 302 && back !== undefined && `${back.origin}${back.pathname}` === REDIRECT_URL,
    `HTTP ${answer.status} Location: ${location}`)) {
    throw new Error('no redirect back to the client');
  }
  const code = back.searchParams.get('code');
  check('redirect carries an authorization code', !!code, location);
  check('redirect echoes state unchanged', back.searchParams.get('state') === provider.sentState,
    `sent ${JSON.stringify(provider.sentState)}, got ${JSON.stringify(back.searchParams.get('state'))}`);
  check('redirect carries iss equal to the authorization server issuer (RFC 9207)',
    issuer !== undefined && back.searchParams.get('iss') === issuer, `iss=${back.searchParams.get('iss')}, issuer=${issuer}`);
  return code;
}

const provider = new HeadlessProvider();
const clientInfo = { name: 'portcullis-interop-typescript', version: '1.0.0' };
let client;
try {
  // 1. Without a token: the SDK is challenged, discovers, registers, and sends us to the login page.
  const first = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, fetch: recordingFetch });
  let firstError;
  try {
    await new Client(clientInfo).connect(first);
  } catch (error) {
    firstError = error;
  }
  const challenge = exchanges.find((e) => e.url.href === mcpUrl && e.status === 401);
  check('unauthenticated MCP request is challenged with 401, resource_metadata and scope="policies:read"',
    !!challenge && /^Bearer\b/i.test(challenge.wwwAuthenticate ?? '') && /resource_metadata="[^"]+"/.test(challenge.wwwAuthenticate)
      && /scope="policies:read"/.test(challenge.wwwAuthenticate), challenge ? challenge.wwwAuthenticate : 'no 401 seen');
  const registration = exchanges.find((e) => e.method === 'POST' && e.url.pathname === '/register');
  check('SDK registered itself dynamically (RFC 7591, 201)', registration?.status === 201,
    registration ? `HTTP ${registration.status}` : 'no registration request');
  if (!check('first connect stops for user authorization (UnauthorizedError)', firstError instanceof UnauthorizedError,
    firstError ? `${firstError.name}: ${firstError.message}` : 'connected without authorization')) {
    if (firstError) console.error(firstError);
    throw new Error('the SDK did not get as far as the authorization redirect');
  }
  if (!check('headless login produced an authorization code', !!provider.code)) throw new Error('no code');

  // 2. Back from the "browser": exchange the code, then connect again with the token.
  await first.finishAuth(provider.code);
  const tokenRequest = exchanges.find((e) => e.method === 'POST' && e.url.pathname === '/token');
  const form = new URLSearchParams(tokenRequest?.body ?? '');
  const sentChallenge = provider.authorizations[0]?.searchParams.get('code_challenge');
  check('token request is an authorization_code grant with the resource indicator',
    tokenRequest?.status === 200 && form.get('grant_type') === 'authorization_code' && form.get('resource') === mcpUrl,
    tokenRequest ? `HTTP ${tokenRequest.status}, grant_type=${form.get('grant_type')}, resource=${form.get('resource')}` : 'no token request');
  check('token request code_verifier matches the S256 code_challenge',
    !!form.get('code_verifier') && s256(form.get('code_verifier')) === sentChallenge, `challenge ${sentChallenge}`);
  const accessToken = provider.tokens()?.access_token ?? '';
  let jwt;
  try {
    jwt = jwtParts(accessToken);
  } catch {
    jwt = undefined;
  }
  const aud = jwt?.payload?.aud;
  check('access token is an ES256 JWT whose aud is the MCP resource',
    jwt?.header?.alg === 'ES256' && (Array.isArray(aud) ? aud.includes(mcpUrl) : aud === mcpUrl),
    `alg=${jwt?.header?.alg}, aud=${JSON.stringify(aud)}`);

  const second = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, fetch: recordingFetch });
  client = new Client(clientInfo);
  await client.connect(second);
  check('connect and initialize with the token', !!client.getServerVersion(), JSON.stringify(client.getServerVersion()));

  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name);
  check('tools/list includes search_policies', names.includes('search_policies'), `tools: ${names.join(', ')}`);

  const result = await client.callTool({ name: 'search_policies', arguments: { query: 'leave' } });
  check('tools/call search_policies {query: "leave"} succeeds', !result.isError, JSON.stringify(result.content));
  check('one authorization round trip in all', provider.authorizations.length === 1, `${provider.authorizations.length}`);

  await consent();
} catch (error) {
  console.error(error);
  check('flow completed', false, `${error?.name}: ${error?.message ?? error}`);
} finally {
  await client?.close().catch(() => {});
}
finish();

/** send_email through a client whose elicitation handler approves, then declines. */
async function consent() {
  const token = execFileSync(portcullis, ['token', '--as', IDENTITY, '--scope', 'email:send', '--data-dir', dataDir],
    { encoding: 'utf8' }).trim();
  const email = { to: 'ada@example.com', subject: 'Leave policy', body: 'The new policy is in.' };
  for (const approves of [true, false]) {
    const asked = [];
    const person = new Client(clientInfo, { capabilities: { elicitation: { form: {} } } });
    person.setRequestHandler(ElicitRequestSchema, async (request) => {
      asked.push(request.params.message);
      return approves ? { action: 'accept', content: { approve: true } } : { action: 'decline' };
    });
    const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    });
    await person.connect(transport);
    let outcome;
    try {
      const sent = await person.callTool({ name: 'send_email', arguments: email });
      outcome = sent.isError ? `tool error ${JSON.stringify(sent.content)}` : 'ran';
    } catch (error) {
      outcome = `${error?.code} ${error?.message}`;
    }
    const word = approves ? 'approved' : 'declined';
    check(`send_email asks for approval in plain language through the elicitation handler (${word})`,
      asked.length === 1 && asked[0].startsWith('Approve this action?')
        && asked[0].includes('Send an email to ada@example.com with the subject "Leave policy".'),
      JSON.stringify(asked));
    if (approves) {
      check('approved, send_email runs', outcome === 'ran', outcome);
    } else {
      check('declined, send_email does not run (error -31002, says declined)',
        outcome.startsWith('-31002') && outcome.includes('declined'), outcome);
    }
    await person.close().catch(() => {});
  }
}
