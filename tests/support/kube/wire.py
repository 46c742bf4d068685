"""Wire-level helpers of the emulator: Status errors, merge patches, URL/request parsing.

KMock's own URL parser treats `/api/v1/namespaces` as a namespace path and crashes on
it, so requests are parsed here (cluster-scoped kinds included) into KMock's Request.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import kmock

Obj = dict[str, Any]


class ApiStatus(Exception):
    """An error answered as a Kubernetes `Status` object."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def body(self) -> Obj:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "code": self.code,
            "reason": self.reason,
            "message": self.message,
        }


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: dicts merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def parse_path(path: str) -> tuple[kmock.resource | None, str | None, str | None, str | None]:
    """URL path -> (resource, namespace, name, subresource), cluster-scoped kinds included."""
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None, None, None, None
    ns = None
    namespace_sub = len(rest) == 3 and rest[2] in ("status", "finalize")
    if len(rest) >= 3 and rest[0] == "namespaces" and not namespace_sub:
        ns, rest = rest[1], rest[2:]
    plural = rest[0] if rest else None
    name = rest[1] if len(rest) > 1 else None
    return (
        kmock.resource(group=group, version=version, plural=plural),
        ns,
        name,
        "/".join(rest[2:]) or None,
    )


async def parse_request(raw: aiohttp.web.BaseRequest, rid: int) -> kmock.Request:
    body = await raw.read()
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    res, ns, name, sub = parse_path(raw.path)
    return kmock.Request(
        id=rid,
        raw_request=raw,
        url=raw.url,
        method=raw.method,
        params=dict(raw.query),
        headers=dict(raw.headers),
        cookies=dict(raw.cookies),
        data=data,
        body=body,
        text=text,
        resource=res,
        namespace=ns,
        name=name,
        subresource=sub,
    )
