"""The official Python MCP SDK calls a tool whose upstream needs the caller's own account, not yet
connected, through the gateway: the SDK's error is the URL-mode elicitation the spec defines
(-32042), parsed by the SDK's own `UrlElicitationRequiredError`. Prints what it saw, as JSON, for
user-oauth.mjs to check.

Usage: python3 user_oauth_python.py MCP_URL ACCESS_TOKEN
"""

import json
import sys

import anyio
import httpx2
from mcp import types
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError, UrlElicitationRequiredError


async def never_asked(context, params: types.ElicitRequestParams) -> types.ElicitResult:
    # Declaring a callback declares elicitation (form and URL modes); nothing should ask here.
    return types.ElicitResult(action="decline")


async def main(url: str, token: str) -> None:
    seen: dict = {}
    async with httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=30) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, elicitation_callback=never_asked) as session:
                await session.initialize()
                try:
                    result = await session.call_tool("whoami", {})
                    seen["ran"] = result.model_dump(mode="json")
                except MCPError as error:
                    seen["code"] = error.error.code
                    try:
                        parsed = UrlElicitationRequiredError.from_error(error.error)
                        seen["elicitations"] = [
                            e.model_dump(mode="json", by_alias=True) for e in parsed.elicitations
                        ]
                    except ValueError as not_url:
                        seen["not_url"] = str(not_url)
    print(json.dumps(seen))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
