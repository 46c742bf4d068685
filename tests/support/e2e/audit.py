"""Where a secret could leak, searched for a canary value: every API request body and stored
object version (status, ConfigMaps, Events, Jobs...), every container log and termination
message, the operator's log, every S3 object (checkpoints, adapter, reports, registry) and
any extra folder (the MLflow server's store) or text (Prometheus series).

The Secret itself holds the canary base64-encoded, as Kubernetes stores it; the audit looks
for the plain value everywhere and for the encoded one everywhere but Secrets' creates
(and the stored Secrets: the user's, and the one the operator makes for credentials a URL
carried). The canary may also be a password inside a URL of the FineTuneJob's spec
(user:password@ in tracking.mlflowUri): the spec is where the user put it, so a
FineTuneJob's `spec` is left out, and everything else of it (status, annotations) is not.
test_e2e_audit.py plants the canary in each place and checks that
every one is reported, so the scenarios' "no leak" means something.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def find_canary(
    canary: str,
    cluster: Any,
    logs: dict[str, str],
    s3: Any,
    bucket: str,
    folders: Iterable[Path] = (),
    texts: dict[str, str] | None = None,
) -> list[str]:
    """Places where `canary` appears (empty when it never leaked)."""
    plain = canary.encode()
    encoded = base64.b64encode(plain)
    hits: list[str] = []
    for req in cluster.requests():
        body = _without_ftj_spec(req.url.path, req.body or b"")
        where = f"API {req.method.value} {req.url.path}"
        url = str(req.url).encode()
        if plain in body or plain in url:
            hits.append(where)
        if encoded in url or (encoded in body and not req.url.path.endswith("/secrets")):
            hits.append(where + " (base64)")
    for _rv, res, event in list(cluster.emu.log):
        if res.plural == "secrets":
            continue
        if res.plural == "finetunejobs":
            event = {**event, "object": {k: v for k, v in event["object"].items() if k != "spec"}}
        text = json.dumps(event).encode()
        if plain in text or encoded in text:
            hits.append(f"stored {res.plural} {event['object']['metadata'].get('name')}")
    for name, text in logs.items():
        if _has(text.encode(errors="replace"), plain, encoded):
            hits.append(f"log {name}")
    client = s3.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            data = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            if _has(data, plain, encoded):
                hits.append(f"s3://{bucket}/{obj['Key']}")
    for folder in folders:
        for path in Path(folder).rglob("*"):
            if path.is_file() and _has(path.read_bytes(), plain, encoded):
                hits.append(str(path))
    for name, text in (texts or {}).items():
        if _has(text.encode(errors="replace"), plain, encoded):
            hits.append(name)
    return sorted(set(hits))


def _without_ftj_spec(path: str, body: bytes) -> bytes:
    """A write of a FineTuneJob (not its /status) without its `spec`: the user's own input."""
    if "/finetunejobs" not in path or path.endswith("/status") or not body:
        return body
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict):
        data.pop("spec", None)
    return json.dumps(data).encode()


def _has(data: bytes, *needles: bytes) -> bool:
    return any(n in data for n in needles)
