"""S3 (or any S3-compatible endpoint) as a Store, through boto3.

Credentials come only from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
mounted from spec.output.credentialsSecret); the endpoint from an explicit argument
(spec.output.s3Endpoint) or AWS_ENDPOINT_URL. Neither is ever logged.

Two layers of retry: botocore retries each request (standard mode, backoff with jitter),
and `put_file`/`get_file` retry the *whole* transfer, because a multipart upload whose
connection died mid-way is easier to restart than to resume. An upload cut off while the
server is unreachable cannot be aborted either: give the bucket a lifecycle rule
`AbortIncompleteMultipartUpload` so such parts do not pile up.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    EndpointConnectionError,
    NoCredentialsError,
)

from kubetune_trainer.errors import ConfigError, RetryableError

from .base import HashingReader, HashingWriter, Store, check_sha256, join_key, sha256_file

log = logging.getLogger(__name__)
T = TypeVar("T")

_MB = 1 << 20
# Errors that mean "the credentials or the bucket are wrong": retrying cannot help.
_PERMANENT_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchBucket",
    "AllAccessDisabled",
    "InvalidBucketName",
    "403",
    "404",
}


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/a/b -> ('bucket', 'a/b')."""
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    return bucket, prefix.strip("/")


def s3_client(endpoint_url: str | None = None, max_attempts: int = 5) -> Any:
    """A boto3 S3 client with bounded timeouts and botocore's standard retry mode."""
    config = Config(
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        # Path-style addressing works with every S3-compatible server (MinIO, Ceph, moto).
        s3={"addressing_style": "path"} if endpoint_url else {},
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None, config=config
    )


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


class S3Store(Store):
    def __init__(
        self,
        uri: str,
        endpoint_url: str | None = None,
        *,
        multipart_threshold: int = 16 * _MB,
        multipart_chunksize: int = 16 * _MB,
        max_concurrency: int = 4,
        request_attempts: int = 5,
        transfer_attempts: int = 3,
        backoff_seconds: float = 2.0,
    ) -> None:
        self.bucket, self.prefix = parse_s3_uri(uri)
        self.root_uri = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self.client = s3_client(self.endpoint_url, request_attempts)
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=max_concurrency,
        )
        # put_file streams from a file object (to hash in the same read), which s3transfer
        # buffers part by part in memory: keep that to what the workers can take at once.
        self.transfer.max_in_memory_upload_chunks = max_concurrency + 1
        self.transfer_attempts = transfer_attempts
        self.backoff_seconds = backoff_seconds

    # -- helpers ---------------------------------------------------------------------------
    def _key(self, key: str) -> str:
        return join_key(self.prefix, key)

    def _where(self) -> str:
        return f"bucket {self.bucket!r} at {self.endpoint_url or 'the AWS default endpoint'}"

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        """Run one whole transfer, retrying transient failures with exponential backoff."""
        for attempt in range(1, self.transfer_attempts + 1):
            try:
                return fn()
            except FileNotFoundError:
                raise
            except ClientError as e:
                if _code(e) in _PERMANENT_CODES:
                    raise self._permanent(e, what) from e
                err: Exception = e
            except S3UploadFailedError as e:
                # The transfer manager wraps the ClientError in a message: "... (NoSuchBucket) ...".
                code = next((c for c in _PERMANENT_CODES if f"({c})" in str(e)), None)
                if code:
                    raise self._permanent(e, what, code) from e
                err = e
            except (BotoCoreError, OSError) as e:
                if isinstance(e, NoCredentialsError):
                    raise self._no_credentials() from e
                err = e
            if attempt == self.transfer_attempts:
                raise RetryableError(
                    f"S3 {what} failed after {attempt} attempts ({self._where()}): "
                    f"{type(err).__name__}: {err}"
                ) from err
            delay = self.backoff_seconds * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
            log.warning("S3 %s failed (%s), retrying in %.1f s", what, type(err).__name__, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _permanent(self, e: Exception, what: str, code: str = "") -> ConfigError:
        code = code or (_code(e) if isinstance(e, ClientError) else type(e).__name__)
        if code in ("NoSuchBucket", "404"):
            return ConfigError(
                f"S3 {what}: {self._where()} does not exist; create the bucket or fix "
                "output.uri / output.s3Endpoint"
            )
        return ConfigError(
            f"S3 {what}: access to {self._where()} was refused ({code}); check the "
            "credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from "
            "output.credentialsSecret) and that they may read and write this bucket"
        )

    def _no_credentials(self) -> ConfigError:
        return ConfigError(
            f"no S3 credentials for {self._where()}: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (in a cluster: output.credentialsSecret)"
        )

    # -- Store -----------------------------------------------------------------------------
    def put_file(self, local: str | Path, key: str) -> str:
        def upload() -> str:
            # One read of the file feeds both the upload and the manifest's sha256.
            with open(local, "rb") as f:
                reader = HashingReader(f, os.fstat(f.fileno()).st_size)
                self.client.upload_fileobj(
                    reader, self.bucket, self._key(key), Config=self.transfer
                )
            return reader.digest() or sha256_file(local)

        return self._retry(f"upload of {self.uri(key)}", upload)

    def get_file(self, key: str, local: str | Path, sha256: str | None = None) -> Path:
        dest = Path(local)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")

        def download() -> str:
            try:
                with open(tmp, "wb") as f:  # a retry starts over: fresh file, fresh hash
                    out = HashingWriter(f)
                    self.client.download_fileobj(
                        self.bucket, self._key(key), out, Config=self.transfer
                    )
                return out.hexdigest()
            except ClientError as e:
                if _code(e) in ("404", "NoSuchKey"):
                    raise FileNotFoundError(f"{self.uri(key)} does not exist") from e
                raise

        try:
            got = self._retry(f"download of {self.uri(key)}", download)
            check_sha256(got, sha256, self.uri(key))
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def put_bytes(self, key: str, data: bytes) -> None:
        self._retry(
            f"upload of {self.uri(key)}",
            lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data),
        )

    def create_bytes(self, key: str, data: bytes) -> bool:
        # S3 conditional write (If-None-Match: *): 412 if the key exists, 409 if another
        # conditional write to it is in flight. A store that ignores the header overwrites.
        def put() -> bool:
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*"
                )
            except ClientError as e:
                if _code(e) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    return False
                raise
            return True

        return self._retry(f"create of {self.uri(key)}", put)

    def get_bytes(self, key: str) -> bytes:
        def get() -> bytes:
            try:
                obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as e:
                if _code(e) in ("NoSuchKey", "404"):
                    raise FileNotFoundError(f"{self.uri(key)} does not exist") from e
                raise
            return obj["Body"].read()

        return self._retry(f"read of {self.uri(key)}", get)

    def sizes(self, prefix: str = "") -> dict[str, int]:
        full = self._key(prefix)
        # Keep a trailing '/' the caller gave: "step-1/" must not match "step-10/".
        if prefix.endswith("/") or (not prefix and self.prefix):
            full += "/"

        def listing() -> dict[str, int]:
            out: dict[str, int] = {}
            strip = len(self.prefix) + 1 if self.prefix else 0
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    out[obj["Key"][strip:]] = int(obj["Size"])
            return out

        return self._retry(f"listing of {self.uri(prefix)}", listing)

    def exists(self, key: str) -> bool:
        def head() -> bool:
            try:
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
                return True
            except ClientError as e:
                if _code(e) in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise

        return self._retry(f"lookup of {self.uri(key)}", head)

    def copy(self, src: str, dest: str) -> None:
        source = {"Bucket": self.bucket, "Key": self._key(src)}
        self._retry(
            f"copy of {self.uri(src)}",
            lambda: self.client.copy(source, self.bucket, self._key(dest), Config=self.transfer),
        )

    def delete_prefix(self, prefix: str) -> int:
        keys = [self._key(k) for k in self.sizes(prefix)]
        for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            self._retry(
                f"delete under {self.uri(prefix)}",
                lambda b=batch: self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": b, "Quiet": True}
                ),
            )
        return len(keys)

    def check_writable(self) -> None:
        """HEAD the bucket, then write and delete a probe object under the run prefix."""
        probe = f".kubetune-write-probe-{os.getpid()}"
        try:
            self.client.head_bucket(Bucket=self.bucket)
            self.client.put_object(Bucket=self.bucket, Key=self._key(probe), Body=b"ok")
            self.client.delete_object(Bucket=self.bucket, Key=self._key(probe))
        except NoCredentialsError as e:
            raise self._no_credentials() from e
        except ClientError as e:
            raise self._permanent(e, "preflight") from e
        except (EndpointConnectionError, ConnectionError) as e:
            raise RetryableError(
                f"S3 endpoint unreachable for {self._where()}: {e}; check output.s3Endpoint "
                "/ AWS_ENDPOINT_URL and the network"
            ) from e
