"""Where a secret could leak, searched for a canary value: every API request body and stored
object version (status, ConfigMaps, Events, Jobs...), every container log and termination
message, the operator's log, every S3 object (checkpoints, adapter, reports, registry) and
any extra folder (the MLflow server's store) or text (Prometheus series).

The Secret itself holds the canary base64-encoded, as Kubernetes stores it; the audit looks
for the plain value everywhere and for the encoded one everywhere but that Secret's create
(and the stored Secret). test_e2e_audit.py plants the canary in each place and checks that
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
        body = req.body or b""
        where = f"API {req.method.value} {req.url.path}"
        url = str(req.url).encode()
        if plain in body or plain in url:
            hits.append(where)
        if encoded in url or (encoded in body and not req.url.path.endswith("/secrets")):
            hits.append(where + " (base64)")
    for _rv, res, event in list(cluster.emu.log):
        if res.plural == "secrets":
            continue
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


def _has(data: bytes, *needles: bytes) -> bool:
    return any(n in data for n in needles)
