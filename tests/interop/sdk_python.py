"""The official Python MCP SDK completes the whole OAuth flow against `portcullis demo` by itself.

401 challenge, protected resource metadata, authorization server metadata, dynamic client
registration, PKCE (S256) authorization with an RFC 8707 resource indicator, login as identity
`editor-a` through `login_hint`, code exchange, MCP calls; then step-up: the first token holds
only `policies:read`, so `update_policy` is refused with HTTP 403 insufficient_scope and the SDK
has to re-authorize for `policies:write` on its own before the call goes through. Then consent:
`send_email` needs a person's approval, asked with the SDK's elicitation callback, in both eras
(2025-11-25: an elicitation on the call's stream; 2026-07-28: an input-required result whose
requestState comes back with the answer): approved, it runs once; declined, it does not; and the
demo's audit trail (read with `portcullis audit query`) holds both with their approval reference.

Usage: python3 sdk_python.py MCP_URL PORTCULLIS_BIN DATA_DIR
"""

import base64
import hashlib
import json
import sys
import traceback
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import subprocess

import anyio
import httpx2
from mcp import types
from mcp.shared.exceptions import MCPError
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

NAME = "python-sdk"
IDENTITY = "editor-a"
REDIRECT_URL = "http://127.0.0.1:47614/callback"
TIMEOUT_SECONDS = 120

passed = 0
failed = 0


def check(description: str, ok: bool, detail: str = "") -> bool:
    global passed, failed
    if ok:
        print(f"ok   {description}", flush=True)
        passed += 1
    else:
        print(f"FAIL {description}{': ' + detail if detail else ''}", flush=True)
        failed += 1
    return ok


class MemoryStorage:
    """The SDK's TokenStorage protocol, in memory; keeps every token it was handed."""

    def __init__(self) -> None:
        self.tokens: list[OAuthToken] = []
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens[-1] if self.tokens else None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    def part(segment: str) -> dict[str, Any]:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))

    header, payload = token.split(".")[:2]
    return part(header), part(payload)


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def rpc_label(request: httpx2.Request) -> str | None:
    """`tools/call NAME` or the JSON-RPC method of an MCP POST, from the request body."""
    try:
        message = json.loads(request.content)
    except Exception:
        return None
    if not isinstance(message, dict):
        return None
    method = message.get("method")
    if method == "tools/call":
        return f"tools/call {(message.get('params') or {}).get('name')}"
    return method


def leaf_errors(error: BaseException) -> list[str]:
    """The errors at the bottom of (possibly nested) exception groups, one line each."""
    if isinstance(error, BaseExceptionGroup):
        return [line for inner in error.exceptions for line in leaf_errors(inner)]
    return [f"{type(error).__name__}: {error}".replace("\n", " ")]


EMAIL = {"to": "ada@example.com", "subject": "Leave policy", "body": "The new policy is in."}


class Run:
    def __init__(self, mcp_url: str, portcullis: str, data_dir: str) -> None:
        self.mcp_url = mcp_url
        self.portcullis = portcullis
        self.data_dir = data_dir
        # The person behind the elicitation callback: what they answer, and what they were asked.
        self.approves = True
        self.asked: list[str] = []
        # Everything in order: each HTTP exchange the SDK made, and each authorization round trip.
        self.events: list[dict[str, Any]] = []
        self.authorizations: list[dict[str, str]] = []
        self.pending: AuthorizationCodeResult | None = None
        self.storage = MemoryStorage()
        self.browser = httpx2.AsyncClient(follow_redirects=False, timeout=30)

    async def on_response(self, response: httpx2.Response) -> None:
        request = response.request
        self.events.append(
            {
                "kind": "http",
                "method": request.method,
                "url": str(request.url),
                "path": request.url.path,
                "status": response.status_code,
                "www_authenticate": response.headers.get("www-authenticate", ""),
                "rpc": rpc_label(request) if request.method == "POST" and str(request.url) == self.mcp_url else None,
                "form": parse_qs(request.content.decode(errors="replace"))
                if request.url.path == "/token" and request.method == "POST"
                else None,
            }
        )

    async def redirect_handler(self, authorization_url: str) -> None:
        """Plays the user: the login_hint makes the authorization server answer the redirect at once."""
        round_trip = len(self.authorizations) + 1
        params = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
        self.authorizations.append(params)
        self.events.append({"kind": "authorize", "scope": params.get("scope", "")})
        self.pending = None

        check(
            f"authorization {round_trip} carries the RFC 8707 resource indicator",
            params.get("resource") == self.mcp_url,
            f"resource={params.get('resource')}",
        )
        check(
            f"authorization {round_trip} uses PKCE with S256",
            params.get("code_challenge_method") == "S256" and len(params.get("code_challenge", "")) == 43,
            f"code_challenge_method={params.get('code_challenge_method')}",
        )

        separator = "&" if urlsplit(authorization_url).query else "?"
        answer = await self.browser.get(f"{authorization_url}{separator}{urlencode({'login_hint': IDENTITY})}")
        location = answer.headers.get("location", "")
        back = urlsplit(location)
        if not check(
            f"authorization {round_trip} with login_hint={IDENTITY} answers 302 to the redirect URI",
            answer.status_code == 302 and f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT_URL,
            f"HTTP {answer.status_code} Location: {location} {answer.text[:200] if answer.status_code != 302 else ''}",
        ):
            raise RuntimeError("no redirect back to the client")
        query = {k: v[0] for k, v in parse_qs(back.query).items()}

        metadata = (await self.browser.get(f"{urlsplit(authorization_url).scheme}://{urlsplit(authorization_url).netloc}/.well-known/oauth-authorization-server")).json()
        check(
            f"authorization {round_trip} redirect carries code, the same state, and iss = the issuer (RFC 9207)",
            bool(query.get("code")) and query.get("state") == params.get("state") and query.get("iss") == metadata.get("issuer"),
            f"code={'yes' if query.get('code') else 'no'}, state {'matches' if query.get('state') == params.get('state') else 'differs'}, "
            f"iss={query.get('iss')}, issuer={metadata.get('issuer')}",
        )
        self.pending = AuthorizationCodeResult(code=query.get("code", ""), state=query.get("state"), iss=query.get("iss"))

    async def callback_handler(self) -> AuthorizationCodeResult:
        if self.pending is None:
            raise RuntimeError("the redirect handler produced no authorization response")
        result, self.pending = self.pending, None
        return result

    def http_events(self, **match: Any) -> list[tuple[int, dict[str, Any]]]:
        return [
            (i, e)
            for i, e in enumerate(self.events)
            if e["kind"] == "http" and all(e.get(k) == v for k, v in match.items())
        ]

    async def main(self) -> None:
        auth = OAuthClientProvider(
            server_url=self.mcp_url,
            client_metadata=OAuthClientMetadata(
                client_name="Portcullis interop (Python SDK)",
                redirect_uris=[AnyUrl(REDIRECT_URL)],
                grant_types=["authorization_code", "refresh_token"],
                response_types=["code"],
                token_endpoint_auth_method="client_secret_post",
            ),
            storage=self.storage,
            redirect_handler=self.redirect_handler,
            callback_handler=self.callback_handler,
        )
        http = httpx2.AsyncClient(
            auth=auth,
            timeout=httpx2.Timeout(30, read=60),
            event_hooks={"response": [self.on_response]},
        )
        async with http:
            async with streamable_http_client(self.mcp_url, http_client=http) as (read, write):
                async with ClientSession(read, write, elicitation_callback=self.elicit) as session:
                    init = await session.initialize()
                    check("connect and initialize through the OAuth flow", bool(init.server_info.name), str(init.server_info))

                    challenged = self.http_events(status=401, url=self.mcp_url)
                    header = challenged[0][1]["www_authenticate"] if challenged else ""
                    check(
                        'unauthenticated MCP request is challenged with 401, resource_metadata and scope="policies:read"',
                        header.lower().startswith("bearer") and 'resource_metadata="' in header and 'scope="policies:read"' in header,
                        header or "no 401 seen",
                    )
                    registered = self.http_events(method="POST", path="/register")
                    check(
                        "SDK registered itself dynamically (RFC 7591, 201)",
                        bool(registered) and registered[0][1]["status"] == 201,
                        f"HTTP {registered[0][1]['status']}" if registered else "no registration request",
                    )
                    first_scope = self.authorizations[0].get("scope", "").split() if self.authorizations else []
                    check(
                        "first authorization asks for the challenged scope policies:read, not policies:write",
                        "policies:read" in first_scope and "policies:write" not in first_scope,
                        f"scope={' '.join(first_scope)!r}",
                    )
                    token_requests = self.http_events(method="POST", path="/token")
                    form = {k: v[0] for k, v in (token_requests[0][1]["form"] or {}).items()} if token_requests else {}
                    check(
                        "token request is an authorization_code grant with the resource indicator and a matching S256 verifier",
                        bool(token_requests)
                        and token_requests[0][1]["status"] == 200
                        and form.get("grant_type") == "authorization_code"
                        and form.get("resource") == self.mcp_url
                        and s256(form.get("code_verifier", "")) == self.authorizations[0].get("code_challenge"),
                        f"HTTP {token_requests[0][1]['status']}, grant_type={form.get('grant_type')}, resource={form.get('resource')}"
                        if token_requests
                        else "no token request",
                    )
                    try:
                        jwt_header, jwt_payload = jwt_parts(self.storage.tokens[0].access_token)
                    except Exception as error:
                        jwt_header, jwt_payload = {}, {"error": str(error)}
                    aud = jwt_payload.get("aud")
                    check(
                        "access token is an ES256 JWT whose aud is the MCP resource",
                        jwt_header.get("alg") == "ES256" and (self.mcp_url in aud if isinstance(aud, list) else aud == self.mcp_url),
                        f"alg={jwt_header.get('alg')}, aud={aud}",
                    )

                    tools = await session.list_tools()
                    names = [tool.name for tool in tools.tools]
                    check(
                        "tools/list includes search_policies and update_policy",
                        "search_policies" in names and "update_policy" in names,
                        f"tools: {', '.join(names)}",
                    )
                    found = await session.call_tool("search_policies", {"query": "leave"})
                    check('tools/call search_policies {query: "leave"} succeeds', not found.is_error, str(found.content))

                    # Step-up: the SDK has to meet the 403 and re-authorize by itself.
                    before = len(self.events)
                    updated = await session.call_tool("update_policy", {"id": "POL-A1", "text": "Employees get 26 days of annual leave."})
                    after = self.events[before:]
                    refused = next(
                        (
                            (i, e)
                            for i, e in enumerate(after)
                            if e["kind"] == "http" and e["rpc"] == "tools/call update_policy" and e["status"] == 403
                        ),
                        None,
                    )
                    header = refused[1]["www_authenticate"] if refused else ""
                    check(
                        "update_policy with a policies:read token is refused: 403 insufficient_scope, scope=\"policies:write\", resource_metadata",
                        refused is not None
                        and header.lower().startswith("bearer")
                        and 'error="insufficient_scope"' in header
                        and 'scope="policies:write"' in header
                        and 'resource_metadata="' in header,
                        header or "no 403 seen for update_policy",
                    )
                    start = refused[0] if refused else 0
                    step_up = next((e for e in after[start:] if e["kind"] == "authorize"), None)
                    scopes = (step_up or {}).get("scope", "").split()
                    check(
                        "SDK re-authorized after the 403, asking for policies:write (and keeping policies:read)",
                        step_up is not None and "policies:write" in scopes and "policies:read" in scopes,
                        f"scope={' '.join(scopes)}" if step_up else "no authorization after the 403",
                    )
                    accepted = next(
                        (
                            e
                            for e in after[start + 1 :]
                            if e["kind"] == "http" and e["rpc"] == "tools/call update_policy" and e["status"] == 200
                        ),
                        None,
                    )
                    check(
                        "update_policy is retried with the stepped-up token and succeeds",
                        refused is not None and accepted is not None and not updated.is_error,
                        f"retry {'seen' if accepted else 'not seen'}, isError={updated.is_error}, content={updated.content}",
                    )
                    again = await session.call_tool("search_policies", {"query": "leave"})
                    check("search_policies still works with the stepped-up token", not again.is_error, str(again.content))
                    check(
                        "exactly 2 authorization round trips (initial + step-up)",
                        len(self.authorizations) == 2,
                        f"{len(self.authorizations)} round trips",
                    )
                    await self.consent_in_a_session(session)
            async with streamable_http_client(self.mcp_url, http_client=http) as (read, write):
                async with ClientSession(read, write, elicitation_callback=self.elicit) as session:
                    await session.discover()
                    await self.consent_stateless(session)
        self.consent_audited()

    async def elicit(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append(getattr(params, "message", ""))
        if self.approves:
            return types.ElicitResult(action="accept", content={"approve": True})
        return types.ElicitResult(action="decline")

    async def consent_in_a_session(self, session: ClientSession) -> None:
        """2025-11-25: the gateway asks on the call's stream; the callback answers."""
        self.approves, self.asked = True, []
        sent = await session.call_tool("send_email", EMAIL)
        check(
            "2025-11-25: send_email asks for approval in plain language through the elicitation callback",
            len(self.asked) == 1 and self.asked[0].startswith("Approve this action?")
            and 'Send an email to ada@example.com with the subject "Leave policy".' in self.asked[0],
            repr(self.asked),
        )
        check("2025-11-25: approved, send_email runs", not sent.is_error, str(sent.content))
        self.approves, self.asked = False, []
        try:
            declined = await session.call_tool("send_email", EMAIL)
            outcome = f"answered {declined}"
        except MCPError as error:
            outcome = f"{error.error.code} {error.error.message}"
        check(
            "2025-11-25: declined, send_email does not run (error -31002, says declined)",
            len(self.asked) == 1 and outcome.startswith("-31002") and "declined" in outcome,
            outcome,
        )

    async def consent_stateless(self, session: ClientSession) -> None:
        """2026-07-28: an input-required result; the answer and the sealed state come back."""
        for approves in (True, False):
            self.approves, self.asked = approves, []
            first = await session.call_tool("send_email", EMAIL, allow_input_required=True)
            if not isinstance(first, types.InputRequiredResult):
                check(f"2026-07-28: send_email answers input_required ({'approve' if approves else 'decline'})", False, str(first))
                continue
            responses = {}
            for key, request in (first.input_requests or {}).items():
                answer = await self.elicit(None, request.params)
                responses[key] = answer.model_dump(mode="json", by_alias=True, exclude_none=True)
            check(
                f"2026-07-28: send_email asks for approval with a sealed requestState ({'approve' if approves else 'decline'})",
                len(self.asked) == 1 and 'Send an email to ada@example.com' in self.asked[0]
                and bool(first.request_state),
                repr(self.asked),
            )
            try:
                final = await session.call_tool(
                    "send_email", EMAIL, input_responses=responses, request_state=first.request_state
                )
                outcome = "ran" if not final.is_error else f"tool error {final.content}"
            except MCPError as error:
                outcome = f"{error.error.code} {error.error.message}"
            if approves:
                check("2026-07-28: approved, send_email runs", outcome == "ran", outcome)
            else:
                check(
                    "2026-07-28: declined, send_email does not run (error -31002, says declined)",
                    outcome.startswith("-31002") and "declined" in outcome,
                    outcome,
                )

    def consent_audited(self) -> None:
        """The demo's trail: each approval and each decline, with its approval reference."""
        query = subprocess.run(
            [self.portcullis, "audit", "query", "--data-dir", self.data_dir,
             "--subject", IDENTITY, "--capability", "send_email", "--format", "json"],
            capture_output=True, text=True, timeout=30,
        )
        # Other clients (the TypeScript run) may act as the same identity: only this client's.
        try:
            client_id = jwt_parts(self.storage.tokens[-1].access_token)[1].get("client_id")
        except Exception:
            client_id = None
        records = [json.loads(line) for line in query.stdout.splitlines() if line.strip()]
        records = [r for r in records if r.get("client_id") == client_id]
        approved = [r for r in records if r.get("decision") == "approved" and r.get("consent")]
        declined = [r for r in records if r.get("decision") == "declined" and r.get("consent")]
        ran = [r for r in records if r.get("outcome") == "ok"]
        requested = {r.get("consent") for r in records if "approval_requested" in r.get("reasons", [])}
        check(
            "audit trail: 2 approved and 2 declined send_email records, each with the reference it was asked under",
            len(approved) == 2 and len(declined) == 2
            and all(r["consent"] in requested for r in approved + declined),
            f"{len(approved)} approved, {len(declined)} declined, {len(requested)} requested; {query.stderr.strip()}",
        )
        check("audit trail: send_email ran exactly twice (the approved calls)", len(ran) == 2, f"{len(ran)} outcomes")

    async def run(self) -> None:
        try:
            with anyio.fail_after(TIMEOUT_SECONDS):
                await self.main()
        except BaseException as error:  # noqa: BLE001 - every way out is a failed check, with its detail
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise
            traceback.print_exception(error, file=sys.stderr)
            check("flow completed", False, "; ".join(leaf_errors(error)))
        finally:
            await self.browser.aclose()


def main() -> int:
    if len(sys.argv) != 4:
        print("usage: python3 sdk_python.py MCP_URL PORTCULLIS_BIN DATA_DIR", file=sys.stderr)
        return 2
    anyio.run(Run(*sys.argv[1:4]).run)
    print(f"{NAME} interop: {passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
