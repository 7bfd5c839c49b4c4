// The approval page in a real browser (Debian's Chromium, driven by playwright-core) against
// `portcullis demo`: admin-a asks to grant three roles (an admin-tier action, approved only on
// the page); the browser signs in as admin-a through the embedded authorization server, sees
// the three requests in plain language, approves two of them in one form; the client's retries
// run exactly those two. The page refuses a replayed form, another subject, and an expired
// request; the demo's audit trail holds every answer and refusal with its approval reference.
// Usage: node approval.mjs PORTCULLIS_BIN CHROMIUM
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const NAME = 'approval-page';
const [portcullis, browserPath] = process.argv.slice(2);
if (!portcullis || !browserPath) {
  console.error('usage: node approval.mjs PORTCULLIS_BIN CHROMIUM');
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
}

const demos = [];
/** A running `portcullis demo` in a fresh data dir, with approvals answerable for `ttl`. */
async function demo(ttl) {
  const dataDir = mkdtempSync(join(tmpdir(), 'portcullis-browser-'));
  const child = spawn(portcullis, ['demo', '--port', '0', '--data-dir', dataDir, '--consent-ttl', ttl],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  demos.push({ child, dataDir });
  let out = '';
  child.stderr.on('data', () => {});
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo did not start: ${out}`)), 60_000);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const found = /MCP endpoint:\s+(\S+)/.exec(out);
      if (found) {
        clearTimeout(timer);
        resolve(found[1]);
      }
    });
  });
  const token = execFileSync(portcullis, ['token', '--as', 'admin-a', '--scope', 'access:grant', '--data-dir', dataDir],
    { encoding: 'utf8' }).trim();
  return { url, dataDir, token, base: url.replace(/\/mcp$/, '') };
}

/** tools/call grant_access as admin-a (2026-07-28, stateless): the JSON-RPC answer. */
async function grant(d, role) {
  const response = await fetch(d.url, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${d.token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': '2026-07-28',
      'mcp-method': 'tools/call',
      'mcp-name': 'grant_access',
    },
    body: JSON.stringify({
      jsonrpc: '2.0', id: 1, method: 'tools/call',
      params: {
        name: 'grant_access', arguments: { subject: 'user-42', role },
        _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} },
      },
    }),
  });
  const text = await response.text();
  const line = text.split('\n').filter((l) => l.startsWith('data:')).pop() ?? `data:${text}`;
  return JSON.parse(line.slice(5));
}

/** Sign `page` in as `identity` on the demo's login page, starting from `link`. */
async function signIn(page, link, identity) {
  await page.goto(link);
  await page.click(`button[name="identity"][value="${identity}"]`);
  await page.waitForURL(/\/approvals/).catch(async (error) => {
    console.error(`stuck at ${page.url()}:`, (await page.content()).slice(0, 1500));
    throw error;
  });
}

function audit(d) {
  const out = execFileSync(portcullis, ['audit', 'query', '--data-dir', d.dataDir, '--format', 'json'], { encoding: 'utf8' });
  return out.split('\n').filter(Boolean).map((line) => JSON.parse(line));
}

let browser;
try {
  browser = await chromium.launch({ executablePath: browserPath, args: ['--no-sandbox'] });
  const d = await demo('10m');

  const asked = {};
  for (const role of ['editor', 'hr', 'viewer']) {
    const answer = await grant(d, role);
    asked[role] = answer?.error?.data?.url;
    if (role === 'editor') {
      check('grant_access (admin tier) answers -31002 with a link to the approval page',
        answer?.error?.code === -31002 && answer.error.data?.approval === 'out-of-band'
          && typeof asked[role] === 'string' && asked[role].startsWith(`${d.base}/approvals?request=ap-`),
        JSON.stringify(answer));
    }
  }
  const id = (role) => new URL(asked[role]).searchParams.get('request');

  const admin = await browser.newContext();
  const page = await admin.newPage();
  await signIn(page, asked.editor, 'admin-a');
  const shown = await page.locator('.request p:not(.meta)').allTextContents();
  check('signed in as admin-a, the page shows the three requests in plain language',
    shown.length === 3 && ['editor', 'hr', 'viewer'].every((role) =>
      shown.some((text) => text.includes(`Give user-42 the role ${role} in your tenant.`)
        && text.includes('It changes who may do what.'))),
    JSON.stringify(shown));
  const headers = (await page.request.get(page.url())).headers();
  check('the page forbids framing, caching and scripts',
    headers['x-frame-options'] === 'DENY' && headers['cache-control'] === 'no-store'
      && (headers['content-security-policy'] ?? '').includes("default-src 'none'"),
    JSON.stringify(headers));
  const formToken = await page.locator('input[name="form"]').inputValue();
  const ticked = await page.locator('input[name="request"]:checked').evaluateAll((boxes) => boxes.map((box) => box.value));
  check('only the request the link names is selected; the others wait unticked',
    ticked.length === 1 && ticked[0] === id('editor'), JSON.stringify(ticked));
  await page.check(`input[name="request"][value="${id('viewer')}"]`);
  await page.click('button[value="approve"]');
  const approved = await page.locator('#approved li').allTextContents();
  check('approving two of the three in one form approves exactly those two',
    approved.length === 2 && approved.includes(id('editor')) && approved.includes(id('viewer')),
    JSON.stringify(approved));

  const replay = await page.request.post(`${d.base}/approvals`, {
    form: { form: formToken, decision: 'approve', request: id('hr') },
    headers: { origin: d.base },
  });
  check('a replayed form (its one-time token already used) is refused with 403',
    replay.status() === 403 && (await replay.text()).includes('Form already used'), `${replay.status()}`);

  const runs = {};
  for (const role of ['editor', 'hr', 'viewer']) runs[role] = await grant(d, role);
  check('the client retries all three: the two approved run', ['editor', 'viewer'].every((role) =>
    JSON.stringify(runs[role]?.result ?? {}).includes('granted')), JSON.stringify(runs));
  check('the one left out does not run (still waiting for approval)',
    runs.hr?.error?.code === -31002 && runs.hr.error.data?.url === asked.hr, JSON.stringify(runs.hr));
  const again = await grant(d, 'editor');
  check('an approval runs once: the same call again needs a new approval',
    again?.error?.code === -31002 && again.error.data?.url !== asked.editor, JSON.stringify(again));

  const other = await browser.newContext();
  const otherPage = await other.newPage();
  await signIn(otherPage, asked.hr, 'editor-a');
  const refusal = await otherPage.request.get(asked.hr);
  check('another subject (editor-a) signed in on the page cannot see or approve admin-a\'s request',
    refusal.status() === 403 && (await otherPage.content()).includes('Not your request'), `${refusal.status()}`);
  const stolen = await otherPage.request.post(`${d.base}/approvals`, {
    form: { form: 'x', decision: 'approve', request: id('hr') },
    headers: { origin: d.base },
  });
  check('nor approve it with a forged form', stolen.status() === 403, `${stolen.status()}`);

  const short = await demo('2s');
  const expiring = (await grant(short, 'editor'))?.error?.data?.url;
  await new Promise((resolve) => setTimeout(resolve, 2_500));
  const late = await browser.newContext();
  const latePage = await late.newPage();
  await signIn(latePage, expiring, 'admin-a');
  check('an expired request is refused (410, says expired)',
    (await latePage.content()).includes('Request expired')
      && (await latePage.request.get(expiring)).status() === 410);

  const records = audit(d);
  const reasons = (r) => r.reasons ?? [];
  const onPage = records.filter((r) => reasons(r).includes('approved_on_page'));
  check('audit: two approvals on the page, each with its approval reference',
    onPage.length === 2 && onPage.every((r) => [id('editor'), id('viewer')].includes(r.consent) && r.subject === 'admin-a'),
    JSON.stringify(onPage));
  check('audit: the replayed form and the other subject are recorded as denials',
    records.some((r) => reasons(r).includes('approval_form_replayed') && r.subject === 'admin-a')
      && records.some((r) => reasons(r).includes('approval_page_not_yours') && r.subject === 'editor-a'));
  const ran = records.filter((r) => r.capability === 'grant_access' && r.outcome === 'ok');
  check('audit: grant_access ran exactly twice', ran.length === 2, `${ran.length}`);
} catch (error) {
  console.error(error);
  check('flow completed', false, `${error?.name}: ${error?.message ?? error}`);
} finally {
  await browser?.close().catch(() => {});
  for (const { child, dataDir } of demos) {
    child.kill();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
console.log(`${NAME} interop: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
