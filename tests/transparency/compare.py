"""Compares two transcripts of the same client sequence, field by field: one taken directly against
an upstream, one through the gateway. Every difference that allow-list.json does not explain is
printed as a path with both values, and makes the exit status 1.

Usage: python compare.py DIRECT GATEWAY ALLOW_LIST CLIENT UPSTREAM
"""

import base64
import binascii
import json
import re
import sys
from typing import Any

ABSENT = "<absent>"
class During(str):
    """Which step a message came during: printed as is."""


KINDS = ("notifications", "asked")  # messages the server sent unprompted, and requests it made of the client


def normalize(value: Any, rules: list[dict[str, Any]], key: str = "") -> Any:
    """Applies the allow-list's rewrites to every string (what differs run to run on its own)."""
    if isinstance(value, dict):
        return {k: normalize(v, rules, k) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v, rules, key) for v in value]
    if not isinstance(value, str):
        return value
    if key == "blob":  # text hidden in base64 (a timestamp, say) gets the same rewrites
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return value
        rewritten = normalize(decoded, rules)
        return value if rewritten == decoded else f"base64 of: {rewritten}"
    for rule in rules:
        value = re.sub(rule["pattern"], rule["replace"], value)
    return value


def prepare(transcript: list[dict[str, Any]], rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    steps = []
    for entry in transcript:
        entry = dict(entry)
        # A progress token is the client's choice (the SDKs use the request id, which shifts with the
        # handshake's round trips): what matters is that progress names this step's own request.
        token = (((entry.get("request") or {}).get("params") or {}).get("_meta") or {}).get("progressToken")
        for note in entry.get("notifications", []):
            params = note.get("params") or {}
            if token is not None and params.get("progressToken") == token:
                params["progressToken"] = "<this request's progressToken>"
        # What the client sent is the client's doing, identical by construction: only what came back
        # is compared.
        entry.pop("request", None)
        steps.append(normalize(entry, rules))
    return steps


def loose(message: dict[str, Any]) -> str:
    return json.dumps([message.get("method"), message.get("params") or {}], sort_keys=True)


def moves(direct: list[dict[str, Any]], gateway: list[dict[str, Any]], out: list[tuple[int, str, Any, Any]]) -> None:
    """A message that came during another step than directly is one difference (when), not two;
    it is then taken out of both steps, and what else differs in it is reported on its own."""
    for kind in KINDS:
        for i, a in enumerate(direct):
            for message in list(a.get(kind, [])):
                if i < len(gateway) and loose(message) in map(loose, gateway[i].get(kind, [])):
                    continue
                for j, b in enumerate(gateway):
                    if j == i or (j < len(direct) and loose(message) in map(loose, direct[j].get(kind, []))):
                        continue
                    match = next((m for m in b.get(kind, []) if loose(m) == loose(message)), None)
                    if match is not None:
                        a[kind].remove(message)
                        b[kind].remove(match)
                        out.append((i, f"{kind}[method={message['method']}](during step)", During(f'[{i} "{a["step"]}"]'), During(f'[{j} "{b["step"]}"]')))
                        walk(message.get("params", ABSENT), match.get("params", ABSENT), f"{kind}[method={message['method']}].params", out, i)
                        break


def walk(a: Any, b: Any, path: str, out: list[tuple[int, str, Any, Any]], step: int) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            walk(a.get(key, ABSENT), b.get(key, ABSENT), f"{path}.{key}" if path else key, out, step)
    elif isinstance(a, list) and isinstance(b, list) and (key := keyed(a, b)):
        # Named things (tools, prompts, resources, messages by method) are matched by name, so one
        # missing is one difference; several of one method are compared in the order they came.
        names_a, names_b = [x[key] for x in a], [x[key] for x in b]
        for name in dict.fromkeys(names_a + names_b):
            xs = [x for x in a if x[key] == name]
            ys = [y for y in b if y[key] == name]
            for n in range(max(len(xs), len(ys))):
                x = xs[n] if n < len(xs) else ABSENT
                y = ys[n] if n < len(ys) else ABSENT
                walk(x, y, f"{path}[{key}={name}]" + (f"[{n}]" if max(len(xs), len(ys)) > 1 else ""), out, step)
        order_a = [n for n in dict.fromkeys(names_a) if n in names_b]
        order_b = [n for n in dict.fromkeys(names_b) if n in names_a]
        if key != "method" and order_a != order_b:
            out.append((step, f"{path}(order)", order_a, order_b))
    elif isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            walk(a[i] if i < len(a) else ABSENT, b[i] if i < len(b) else ABSENT, f"{path}[{i}]", out, step)
    elif json.dumps(a) != json.dumps(b):  # 1 and 1.0, true and 1 differ on the wire, so here too
        out.append((step, path, a, b))


def keyed(a: list[Any], b: list[Any]) -> str | None:
    """The member that names each element of both lists, if there is one."""
    for key in ("name", "uri", "uriTemplate", "method"):
        sides = [[x.get(key) if isinstance(x, dict) else None for x in side] for side in (a, b)]
        unique = key == "method" or all(len(set(map(str, s))) == len(s) for s in sides)
        if (a or b) and unique and all(None not in s for s in sides):
            return key
    return None


def allowed(rule: dict[str, Any], client: str, upstream: str, step: str, path: str, b: Any) -> bool:
    return (
        client in rule.get("clients", [client])
        and upstream in rule.get("upstreams", [upstream])
        and re.fullmatch(rule.get("step", ".*"), step) is not None
        and re.fullmatch(rule["path"], path) is not None
        and ("gateway" not in rule or json.dumps(b) == json.dumps(rule["gateway"]))
    )


def short(value: Any) -> str:
    text = value if value is ABSENT or isinstance(value, During) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 300 else f"{text[:300]}... ({len(text)} chars)"


def main() -> int:
    direct_file, gateway_file, allow_file, client, upstream = sys.argv[1:6]
    with open(allow_file) as f:
        allow = json.load(f)
    with open(direct_file) as f:
        direct = prepare(json.load(f), allow["normalize"])
    with open(gateway_file) as f:
        gateway = prepare(json.load(f), allow["normalize"])
    found: list[tuple[int, str, Any, Any]] = []
    moves(direct, gateway, found)
    for i in range(max(len(direct), len(gateway))):
        walk(direct[i] if i < len(direct) else ABSENT, gateway[i] if i < len(gateway) else ABSENT, "", found, i)
    failures = explained = known = 0
    for i, path, x, y in sorted(found, key=lambda d: d[0]):
        step = (direct[i] if i < len(direct) else gateway[i])["step"]
        if any(allowed(rule, client, upstream, step, path, y) for rule in allow["differences"]):
            explained += 1
            continue
        # A gateway shortcoming already reported and not fixed yet: printed, counted, not failed,
        # so that the suite guards everything else meanwhile.
        issue = next((rule["open"] for rule in allow.get("open", []) if allowed(rule, client, upstream, step, path, y)), None)
        if issue is not None:
            known += 1
            print(f'  KNOWN [{i} "{step}"] {path} ({issue})')
            continue
        failures += 1
        print(f'  DIFF [{i} "{step}"] {path}\n       direct:  {short(x)}\n       gateway: {short(y)}')
    print(f"  {failures} unexplained difference(s), {explained} allowed, {known} known and open")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
