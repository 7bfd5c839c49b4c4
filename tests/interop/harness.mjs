// What the interop scripts share: starting `portcullis serve` and learning its address, and a
// client-credentials token from an oidc-provider.
import { spawn } from 'node:child_process';

/** `portcullis serve --config <config>`, and the URL it says it listens on; its stderr is
 * passed through, and kept in `gateway.stderr` when `keep` is set. */
export async function serve(portcullis, config, { keep = false } = {}) {
  const gateway = spawn(portcullis, ['serve', '--config', config], { stdio: ['ignore', 'pipe', keep ? 'pipe' : 'inherit'] });
  gateway.stderrText = '';
  if (keep) {
    gateway.stderr.on('data', (chunk) => { gateway.stderrText += chunk; process.stderr.write(chunk); });
  }
  const url = await new Promise((resolve, reject) => {
    gateway.stdout.on('data', (chunk) => {
      const line = chunk.toString().split('\n').find((l) => l.startsWith('listening '));
      if (line) resolve(line.slice('listening '.length).trim());
    });
    gateway.on('exit', (code) => reject(new Error(`gateway exited with ${code}`)));
  });
  return { gateway, url };
}

/** A client-credentials token of `client` (secret `<client>-secret`) for `resource`. */
export async function clientToken(issuer, client, resource, scope = 'mcp') {
  const response = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${client}:${client}-secret`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope, resource }),
  });
  const body = await response.json();
  if (!body.access_token) throw new Error(`no token for ${client}: ${JSON.stringify(body)}`);
  return body.access_token;
}
