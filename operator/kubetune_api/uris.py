"""URI rules shared by the spec, the trainer's storage layer and the operator."""

from __future__ import annotations

import copy
import re
from typing import Any, Final
from urllib.parse import unquote

from .constants import Env

# Offline models the trainer can build or unpack without a hub (closed set: a spec
# is untrusted input, so names map to code, never to import paths).
BUILTIN_MODELS: Final = ("tiny-llama", "smollm2-135m-instruct", "all-minilm-l6-v2")

_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_S3 = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def scheme_of(uri: str) -> str:
    """'s3', 'file', 'builtin' or '' (a plain path or hub id)."""
    if uri.startswith("builtin:"):
        return "builtin"
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", uri)
    return m.group(1).lower() if m else ""


def check_storage_uri(uri: str, what: str) -> str:
    """An output/data location: s3://bucket/prefix, file:// or a filesystem path."""
    scheme = scheme_of(uri)
    if scheme == "s3":
        if not _S3.match(uri):
            raise ValueError(
                f"{what} {uri!r} is not a valid S3 URI; use s3://<bucket>/<prefix> with a "
                "lowercase bucket name of 3-63 characters"
            )
    elif scheme not in ("", "file"):
        raise ValueError(
            f"{what} {uri!r} has unsupported scheme {scheme!r}; "
            "use s3://bucket/prefix or a local path"
        )
    return uri


def check_model_uri(uri: str) -> str:
    """model.base: a hub id, a local folder, s3://bucket/prefix or builtin:<name>."""
    scheme = scheme_of(uri)
    if scheme == "builtin":
        name = uri.split(":", 1)[1]
        if name not in BUILTIN_MODELS:
            raise ValueError(
                f"unknown built-in model {name!r}; choose one of "
                + ", ".join("builtin:" + m for m in BUILTIN_MODELS)
            )
        return uri
    if scheme in ("s3", "file"):
        return check_storage_uri(uri, "model location")
    if scheme:
        raise ValueError(
            f"model location {uri!r} has unsupported scheme {scheme!r}; use a Hugging Face "
            "id, a local folder, s3://bucket/prefix or builtin:<name>"
        )
    return _hub_id_or_path(uri, "")


def _hub_id_or_path(uri: str, what: str) -> str:
    if uri.startswith((".", "/", "~")) or _HF_ID.match(uri):
        return uri
    raise ValueError(f"{what}{uri!r} is neither a Hugging Face id (org/name) nor a local path")


def check_tokenizer_uri(uri: str) -> str:
    """model.tokenizer: a hub id, a local folder or s3://bucket/prefix (fetched like the base).

    No builtin: (a built-in model brings its own tokenizer) and no file:// (a plain path is
    what the trainer hands to the tokenizer loader).
    """
    scheme = scheme_of(uri)
    if scheme == "s3":
        return check_storage_uri(uri, "model.tokenizer")
    if scheme == "builtin":
        raise ValueError(
            f"model.tokenizer {uri!r}: a built-in model brings its own tokenizer; "
            "remove model.tokenizer"
        )
    if scheme:
        raise ValueError(
            f"model.tokenizer {uri!r} has unsupported scheme {scheme!r}; use a Hugging Face "
            "id (org/name), a local folder or s3://bucket/prefix"
        )
    return _hub_id_or_path(uri, "model.tokenizer ")


_MLFLOW = re.compile(r"^(https?://[^\s/]+(/\S*)?|sqlite:///\S+)$")


def check_mlflow_uri(uri: str) -> str:
    """tracking.mlflowUri: an MLflow server (http(s)://) or a SQLite store (sqlite:///)."""
    if not _MLFLOW.match(uri):
        raise ValueError(
            f"tracking.mlflowUri {uri!r} is not an MLflow tracking URI kubetune supports; "
            "use http(s)://host[:port] (a tracking server) or sqlite:///path/to/mlflow.db"
        )
    return uri


def is_remote(uri: str) -> bool:
    return scheme_of(uri) == "s3"


def run_prefix(output_uri: str, namespace: str, name: str) -> str:
    """Where one FineTuneJob's artifacts live: <output>/<namespace>/<name>."""
    return f"{output_uri.rstrip('/')}/{namespace}/{name}"


# -- credentials inside URLs (user:password@host) -------------------------------------------
# A URL's userinfo: after "scheme://", up to the first "@" before any "/", "?", "#" or blank.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/?#@\s]*)@")
REDACTED: Final = "***"
# Spec fields that may carry user:password@ and the environment variables the trainer reads
# the credentials from instead: MLflow's own client reads MLFLOW_TRACKING_USERNAME/PASSWORD;
# the trainer's Pushgateway push reads KUBETUNE_PUSHGATEWAY_USERNAME/PASSWORD.
URL_CREDENTIAL_FIELDS: Final = (
    (("tracking", "mlflowUri"), Env.MLFLOW_USERNAME, Env.MLFLOW_PASSWORD),
    (("metrics", "pushgatewayUrl"), Env.PUSHGATEWAY_USERNAME, Env.PUSHGATEWAY_PASSWORD),
)


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """'https://u:p%40ss@host/x' -> ('https://host/x', 'u', 'p@ss'); (url, None, None) if
    the URL carries no userinfo."""
    m = _USERINFO.match(url)
    if m is None:
        return url, None, None
    user, sep, password = m.group("userinfo").partition(":")
    clean = m.group("scheme") + url[m.end() :]
    return clean, unquote(user), unquote(password) if sep else None


def redact_text(text: str) -> str:
    """Any text (a URL, a log line, an error message) with every URL's userinfo masked."""
    return _USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@", text)


def redact_spec(obj: Any) -> Any:
    """A copy of a spec (dicts, lists, strings) with every URL's userinfo masked: for
    printing, logging and records (MLflow params, the registry)."""
    if isinstance(obj, dict):
        return {k: redact_spec(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_spec(v) for v in obj]
    return redact_text(obj) if isinstance(obj, str) else obj


def strip_spec_credentials(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(spec with the userinfo removed from URL_CREDENTIAL_FIELDS, {env var: value}): what the
    operator stores in the ConfigMap and what it puts in the job's own Secret instead."""
    out = copy.deepcopy(spec)
    env: dict[str, str] = {}
    for (section, key), user_env, password_env in URL_CREDENTIAL_FIELDS:
        part = out.get(section)
        url = part.get(key) if isinstance(part, dict) else None
        if not isinstance(url, str):
            continue
        clean, user, password = split_credentials(url)
        if user is None:
            continue
        part[key] = clean
        env[user_env] = user
        if password is not None:
            env[password_env] = password
    return out, env
