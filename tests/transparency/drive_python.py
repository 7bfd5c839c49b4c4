"""Drives one MCP server with the official Python SDK client through a sequence from sequences/*.json.

Writes the transcript: per step the request, the outcome as it came off the wire, the
notifications, and what the server asked the client (sampling, elicitation, roots: as server
requests in 2025-11-25, as the input requests of an input-required result in 2026-07-28).
ERA 2025-11-25 connects with the initialize handshake (mode="legacy"); ERA 2026-07-28 lets the SDK
negotiate (mode="auto": server/discover, falling back to initialize where the server is 2025-only,
as both reference servers are when reached directly).

Usage: python drive_python.py ERA SEQUENCE OUT [--sandbox DIR] (--stdio COMMAND ARGS... | --url URL --token TOKEN)
"""

import json
import os
import sys
import warnings
from typing import Any

import anyio
import httpx2
from mcp import types
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import SessionMessage

# The deprecated 2025-era calls (ping, setLevel, subscribe) are what this client is here to make.
warnings.simplefilter("ignore")

SAMPLING = types.CreateMessageResult(
    role="assistant",
    model="canned-model",
    stop_reason="endTurn",
    content=types.TextContent(type="text", text="Canned sampling answer, 0.7 °C."),
)
FORM = {
    "name": "Ada Lovelace", "check": True, "firstLine": "It was a dark and stormy night.", "email": "ada@example.com",
    "homepage": "https://example.com/ada", "birthdate": "1815-12-10", "integer": 7, "number": 2.5,
    "untitledSingleSelectEnum": "Joey", "untitledMultipleSelectEnum": ["Piano", "Bass"], "titledSingleSelectEnum": "hero-2",
    "titledMultipleSelectEnum": ["fish-3"], "legacyTitledEnum": "pet-2",
}  # fmt: skip


class Recorder:
    """Collects every message of the current step; the taps below feed it."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] | None = None
        self.received: list[dict[str, Any]] = []

    def start(self) -> None:
        self.sent, self.received = [], []

    def add(self, bucket: list[dict[str, Any]] | None, item: Any) -> None:
        if bucket is not None and isinstance(item, SessionMessage):
            # exclude_unset: what the peer sent, no defaults the model filled in.
            bucket.append(item.message.model_dump(mode="json", by_alias=True, exclude_unset=True))


class TapRead:
    def __init__(self, inner: Any, recorder: Recorder) -> None:
        self.inner, self.recorder = inner, recorder

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def receive(self) -> Any:
        item = await self.inner.receive()
        self.recorder.add(self.recorder.received if self.recorder.sent is not None else None, item)
        return item

    def __aiter__(self) -> "TapRead":
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> "TapRead":
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self.inner.__aexit__(*exc)


class TapWrite(TapRead):
    async def send(self, item: Any) -> None:
        self.recorder.add(self.recorder.sent, item)
        await self.inner.send(item)


class Tap:
    """A Transport that hands the SDK tapped copies of the inner transport's streams."""

    def __init__(self, inner: Any, recorder: Recorder) -> None:
        self.inner, self.recorder = inner, recorder

    async def __aenter__(self) -> Any:
        read, write = await self.inner.__aenter__()
        return TapRead(read, self.recorder), TapWrite(write, self.recorder)

    async def __aexit__(self, *exc: Any) -> Any:
        return await self.inner.__aexit__(*exc)


def bare(message: dict[str, Any]) -> dict[str, Any]:
    return {k: message[k] for k in ("method", "params") if k in message}


def record(step: dict[str, Any], sent: list[dict[str, Any]], received: list[dict[str, Any]], sdk_error: str | None) -> dict[str, Any]:
    # The handshake may take two tries (server/discover refused, then initialize): the last counts.
    methods = ("server/discover", "initialize") if step["method"] == "initialize" else (step["method"],)
    requests = [m for m in sent if m.get("method") in methods and "id" in m]
    ids = {m["id"] for m in requests}
    answers = [m for m in received if "method" not in m and m.get("id") in ids]
    answer = next((a for a in reversed(answers) if "result" in a), answers[-1] if answers else None)
    request = next((r for r in requests if answer and r["id"] == answer.get("id")), requests[0] if requests else None)
    asked = [bare(m) for m in received if "method" in m and "id" in m]
    for a in answers:  # 2026-07-28: what the server asks for comes back inside input-required results
        if (a.get("result") or {}).get("resultType") == "input_required":
            asked += [bare(r) for r in (a["result"].get("inputRequests") or {}).values()]
    entry = {
        "step": step["step"],
        "request": bare(request) if request else None,
        "outcome": ({"error": answer["error"]} if "error" in answer else {"result": answer["result"]}) if answer else None,
        "notifications": [bare(m) for m in received if "method" in m and "id" not in m],
        "asked": asked,
    }
    if sdk_error:
        entry["sdkError"] = sdk_error
    return entry


def reference(ref: dict[str, Any]) -> Any:
    if ref["type"] == "ref/prompt":
        return types.PromptReference(type="ref/prompt", name=ref["name"])
    return types.ResourceTemplateReference(type="ref/resource", uri=ref["uri"])


async def run(era: str, sequence: dict[str, Any], args: list[str], out: str) -> int:
    recorder = Recorder()

    async def sampling(context: Any, params: Any) -> types.CreateMessageResult:
        return SAMPLING

    async def elicitation(context: Any, params: Any) -> types.ElicitResult:
        if getattr(params, "mode", None) == "url":
            return types.ElicitResult(action="accept")
        return types.ElicitResult(action="accept", content=FORM)

    async def roots(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=r["uri"], name=r.get("name")) for r in sequence["roots"]])

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        pass

    if "--stdio" in args:
        at = args.index("--stdio")
        inner = stdio_client(StdioServerParameters(command=args[at + 1], args=args[at + 2 :]), errlog=open(os.devnull, "w"))
        http = None
    else:
        token = args[args.index("--token") + 1]
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=90))
        inner = streamable_http_client(args[args.index("--url") + 1], http_client=http)
    client = Client(
        Tap(inner, recorder),
        mode="legacy" if era == "2025-11-25" else "auto",
        read_timeout_seconds=60,
        sampling_callback=sampling,
        elicitation_callback=elicitation,
        list_roots_callback=roots,
        # 2026-07-28 has no logging/setLevel: log messages come only to requests that opt in.
        log_level="debug" if era != "2025-11-25" else None,
        cache=None,  # every step goes to the server, none is answered from a local cache
        client_info=types.Implementation(name="transparency-python", version="1.0.0"),
    )
    c = client
    calls = {
        "ping": lambda p: c.send_ping(),
        "logging/setLevel": lambda p: c.set_logging_level(p["level"]),
        "tools/list": lambda p: c.list_tools(),
        "tools/call": lambda p: c.call_tool(p["name"], p.get("arguments"), progress_callback=progress if step.get("progress") else None),
        "prompts/list": lambda p: c.list_prompts(),
        "prompts/get": lambda p: c.get_prompt(p["name"], p.get("arguments")),
        "resources/list": lambda p: c.list_resources(),
        "resources/templates/list": lambda p: c.list_resource_templates(),
        "resources/read": lambda p: c.read_resource(p["uri"]),
        "resources/subscribe": lambda p: c.subscribe_resource(p["uri"]),
        "resources/unsubscribe": lambda p: c.unsubscribe_resource(p["uri"]),
        "completion/complete": lambda p: c.complete(reference(p["ref"]), p["argument"], (p.get("context") or {}).get("arguments")),
    }
    transcript: list[dict[str, Any]] = []
    status = 0
    client_name = f"python-{era[:4]}"
    steps = [s for s in sequence["steps"] if era in s.get("eras", [era]) and client_name in s.get("clients", [client_name])]
    try:
        recorder.start()
        sdk_error = None
        try:
            await client.__aenter__()
        except BaseException as error:  # noqa: BLE001 - recorded, then the run stops
            sdk_error = describe(error)
        await anyio.sleep(steps[0].get("settle", 0) / 1000)
        transcript.append(record(steps[0], recorder.sent or [], recorder.received, sdk_error))
        if sdk_error:
            raise RuntimeError(f"could not connect: {sdk_error}")
        for step in steps[1:]:
            recorder.start()
            sdk_error = None
            try:
                with anyio.fail_after(90):
                    await calls[step["method"]](step.get("params") or {})
            except Exception as error:  # noqa: BLE001 - an error is an outcome like any other
                sdk_error = describe(error)
            await anyio.sleep(step.get("settle", 0) / 1000)
            transcript.append(record(step, recorder.sent or [], recorder.received, sdk_error))
    except BaseException as error:  # noqa: BLE001
        print(f"drive_python: {describe(error)}", file=sys.stderr)
        status = 1
    finally:
        recorder.sent = None
        with open(out, "w") as f:
            json.dump(transcript, f, indent=1, ensure_ascii=False)
        with anyio.move_on_after(10):
            try:
                await client.__aexit__(None, None, None)
            except BaseException:  # noqa: BLE001 - closing is best effort
                pass
        if http is not None:
            await http.aclose()
    return status


def describe(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(describe(e) for e in error.exceptions)
    return f"{type(error).__name__}: {error}".replace("\n", " ")[:500]


def main() -> int:
    era, sequence_file, out, *args = sys.argv[1:]
    sandbox = args[args.index("--sandbox") + 1] if "--sandbox" in args else ""
    with open(sequence_file) as f:
        sequence = json.loads(f.read().replace("$SANDBOX", sandbox))
    return anyio.run(run, era, sequence, args, out)


if __name__ == "__main__":
    sys.exit(main())
