"""The memory preflight before any pod: refuse a job that cannot fit before it holds GPUs.

The trainer checks memory at start-up, inside a pod that already holds its GPUs (and a
refusal there is exit 66 after the image pull and the data download). When the base's
config.json is reachable from the operator, the same estimate (kubetune_api.memory, no
torch, config numbers only: never weights) runs before the Job is created, and a job that
cannot fit ends Failed/OutOfMemory with the trainer's own message. Reachable means:
  * s3://bucket/prefix: <prefix>/config.json, read with the operator's own credentials and
    only from AWS S3 or an --s3-endpoint-allow endpoint (as for cleanup);
  * a local folder under an --model-config-root (a volume the operator mounts too);
hub ids, builtin: models and everything else are left to the trainer (no hub traffic from
the operator). Bounded: config.json over MAX_CONFIG_BYTES is not read, the read has a
timeout, and any failure to read or understand it skips the check (logged): the trainer
still checks. Memory is what the pod gets: one GPU of the size its resources.gpuType names
("...-80GB"), or resources.memory on a CPU; precision auto is taken as bf16, and the whole
device as free: the operator refuses only what cannot fit at best.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from kubetune_api import memory
from kubetune_api.spec import FineTuneJob
from kubetune_api.uris import scheme_of

from .config import endpoint_allowed

MAX_CONFIG_BYTES = 1024 * 1024  # a config.json is a few KiB; anything bigger is not one
TIMEOUT_SECONDS = 5.0
_GPU_GB = re.compile(r"(?<![0-9])(\d{1,4})GB(?![A-Za-z])")  # A100-SXM4-80GB, H100-80GB-HBM3
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)([KMGTPE]i?|[kmgtpe]|)$")
_UNITS = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
          "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
          "Ei": 2**60}  # fmt: skip


class NotReadable(Exception):
    """config.json is not reachable or not usable here: the trainer checks instead."""


def quantity_bytes(text: str) -> int | None:
    m = _QUANTITY.match(text.strip())
    if m is None or m.group(2) not in _UNITS:
        return None
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def device_memory(job: FineTuneJob) -> tuple[str, int] | None:
    """("cuda", bytes of one GPU) from resources.gpuType, ("cpu", resources.memory), or None."""
    res = job.spec.resources
    if res.gpus_per_node > 0:
        sizes = _GPU_GB.findall(res.gpu_type or "")
        return ("cuda", int(sizes[-1]) * memory.GIB) if sizes else None
    limit = quantity_bytes(res.memory)
    return ("cpu", limit) if limit else None


def _read_local(base: str, roots: tuple[str, ...]) -> bytes:
    path = Path(base.removeprefix("file://")).expanduser()
    if not path.is_absolute():
        raise NotReadable("a relative model path is the trainer's, not the operator's")
    real = Path(os.path.realpath(path / "config.json"))
    allowed = [Path(os.path.realpath(r)) for r in roots]
    if not any(real.is_relative_to(r) for r in allowed):
        raise NotReadable(f"{path} is not under an --model-config-root")
    if real.stat().st_size > MAX_CONFIG_BYTES:
        raise NotReadable(f"{real} is over {MAX_CONFIG_BYTES} bytes")
    with real.open("rb") as f:
        return f.read(MAX_CONFIG_BYTES + 1)


def _read_s3(base: str, endpoint: str | None, allow: tuple[str, ...], timeout: float) -> bytes:
    if not endpoint_allowed(endpoint, allow):
        raise NotReadable(f"s3Endpoint {endpoint} is not in --s3-endpoint-allow")
    import boto3
    from botocore.config import Config

    bucket, _, prefix = base.removeprefix("s3://").partition("/")
    key = f"{prefix.rstrip('/')}/config.json" if prefix.strip("/") else "config.json"
    session = boto3.session.Session()  # fresh: rotated credentials are picked up
    if session.get_credentials() is None:
        raise NotReadable("the operator has no S3 credentials")
    cfg = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1})
    s3 = session.client("s3", endpoint_url=endpoint, config=cfg)
    # One ranged GET, no HEAD: a byte past the limit is enough for read_config to refuse it.
    body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{MAX_CONFIG_BYTES}")["Body"]
    return body.read(MAX_CONFIG_BYTES + 1)


def read_config(
    job: FineTuneJob,
    roots: tuple[str, ...],
    s3_allow: tuple[str, ...],
    timeout: float = TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """The base's config.json as a dict, or NotReadable."""
    base = job.spec.model.base
    scheme = scheme_of(base)
    if job.spec.model.gguf_file:
        raise NotReadable("a GGUF base has no config.json")
    if scheme == "s3":
        data = _read_s3(base, job.spec.output.s3_endpoint, s3_allow, timeout)
    elif (scheme in ("", "file")) and roots and base.startswith(("/", "file://", "~")):
        data = _read_local(base, roots)
    else:
        raise NotReadable(f"{base} is read by the trainer only")
    if len(data) > MAX_CONFIG_BYTES:
        raise NotReadable(f"config.json is over {MAX_CONFIG_BYTES} bytes")
    config = json.loads(data)
    if not isinstance(config, dict):
        raise NotReadable("config.json is not a JSON object")
    return config


def verdict(job: FineTuneJob, config: dict[str, Any]) -> str | None:
    """The trainer's DoesNotFit message for this job on its pod's memory, or None (fits, or
    the config/device cannot be judged here)."""
    if job.spec.model.task != "causal_lm" or job.spec.training.engine != "huggingface":
        return None
    device = device_memory(job)
    if device is None:
        return None
    kind, available = device
    try:
        memory.check_before_start(job.spec, config, available, kind)
    except memory.DoesNotFit as exc:
        return str(exc)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise NotReadable(f"config.json is not a Llama-style decoder's ({exc!r})") from None
    return None


async def refusal(
    job: FineTuneJob,
    roots: tuple[str, ...],
    s3_allow: tuple[str, ...],
    logger: logging.Logger,
    timeout: float = TIMEOUT_SECONDS,
) -> str | None:
    """The preflight's refusal message, or None: off the event loop, at most `timeout`."""
    if device_memory(job) is None:
        return None
    try:
        config = await asyncio.wait_for(
            asyncio.to_thread(read_config, job, roots, s3_allow, timeout), timeout * 2
        )
        return verdict(job, config)
    except Exception as exc:  # NotReadable, boto errors, bad JSON, a timeout: skip
        logger.info(f"memory preflight skipped for {job.spec.model.base}: {exc}")
        return None
