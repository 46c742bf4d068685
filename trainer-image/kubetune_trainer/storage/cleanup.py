"""Delete a run's artifacts (the cleanup policy `delete`). Needs only boto3: no torch.

The operator cannot import the trainer; it may copy `delete_s3_prefix` as is.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def delete_s3_prefix(client: Any, bucket: str, prefix: str) -> int:
    """Delete every object under s3://bucket/prefix/ with a boto3 client; returns the count.

    The prefix is taken as a folder ('/' appended): deleting run "a" must not touch "ab".
    """
    prefix = prefix.strip("/")
    if not prefix:
        raise ValueError("refusing to delete a whole bucket: give a run prefix")
    deleted = 0
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    for page in pages:
        objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objects:  # a page holds at most 1000 keys, the DeleteObjects limit
            client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
            deleted += len(objects)
    return deleted


def delete_run(uri: str, endpoint_url: str | None = None) -> int:
    """Delete everything under a run prefix (s3://bucket/ns/name or a local folder)."""
    if uri.startswith("s3://"):
        from .s3 import parse_s3_uri, s3_client

        bucket, prefix = parse_s3_uri(uri)
        return delete_s3_prefix(s3_client(endpoint_url), bucket, prefix)
    path = Path(uri[len("file://") :] if uri.startswith("file://") else uri).expanduser()
    if not path.exists():
        return 0
    count = sum(1 for p in path.rglob("*") if p.is_file())
    shutil.rmtree(path)
    return count
