"""URI rules shared by the spec, the trainer's storage layer and the operator.

Every pattern is checked with `fullmatch`: `re.match(r"...$")` accepts a trailing newline.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import unquote

from .constants import Env
from .safe_yaml import shorten

# Offline models the trainer can build or unpack without a hub (closed set: a spec
# is untrusted input, so names map to code, never to import paths).
BUILTIN_MODELS: Final = ("tiny-llama", "smollm2-135m-instruct", "all-minilm-l6-v2")

_HF_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", re.ASCII)
_S3 = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?")
DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# C0/C1 controls and Unicode line/paragraph separators (YAML reads those as line breaks too).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Registry names become a folder under <output>/registry/ and an MLflow model name: one path
# segment, no '..' (a dot is followed by another character or ends the name); 128 at most.
REGISTRY_NAME: Final = r"[A-Za-z0-9](\.?[A-Za-z0-9_-])*\.?"
_C = r"\s\x00-\x1f\x7f"  # whitespace and control characters: never in a URL
HTTP_URL: Final = rf"https?://[^{_C}/?#@]+(@[^{_C}/?#@]+)?(/[^{_C}]*)?"


MAX_URI_LENGTH: Final = 4096  # PATH_MAX; URLs and hub ids are far shorter


def _printable(uri: str, what: str) -> None:
    """No control characters (a trailing newline, a NUL) in a location, and a sane length."""
    if len(uri) > MAX_URI_LENGTH:
        raise ValueError(f"{what} is {len(uri)} characters long; at most {MAX_URI_LENGTH}")
    if _CONTROL.search(uri):
        raise ValueError(f"{what} {shorten(repr(uri))} holds a control character (newline?)")


def check_registry_name(name: str, what: str = "tracking.registerAs") -> str:
    """A name in kubetune's registry: one path segment, never '..', at most 128 characters."""
    if len(name) > 128 or not re.fullmatch(REGISTRY_NAME, name):
        raise ValueError(
            f"{what} {shorten(repr(name))} is not a registry name: use 1-128 letters, digits, "
            "'.', '_' and '-', starting with a letter or digit, without '..' or '/'"
        )
    return name


def check_http_url(url: str, what: str) -> str:
    """An http(s):// endpoint (Pushgateway, S3 endpoint): no spaces or control characters."""
    _printable(url, what)
    if not re.fullmatch(HTTP_URL, url):
        raise ValueError(
            f"{what} {shorten(repr(url))} is not an http(s) URL; use http(s)://host[:port][/path]"
        )
    return url


def scheme_of(uri: str) -> str:
    """'s3', 'file', 'builtin' or '' (a plain path or hub id)."""
    if uri.startswith("builtin:"):
        return "builtin"
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", uri)
    return m.group(1).lower() if m else ""


def check_storage_uri(uri: str, what: str) -> str:
    """An output/data location: s3://bucket/prefix, file:// or a filesystem path."""
    _printable(uri, what)
    scheme = scheme_of(uri)
    if scheme == "s3":
        if not _S3.fullmatch(uri):
            raise ValueError(
                f"{what} {shorten(repr(uri))} is not a valid S3 URI; use s3://<bucket>/<prefix> "
                "with a lowercase bucket name of 3-63 characters"
            )
    elif scheme not in ("", "file"):
        raise ValueError(
            f"{what} {shorten(repr(uri))} has unsupported scheme {shorten(repr(scheme), 40)}; "
            "use s3://bucket/prefix or a local path"
        )
    return uri


def check_dataset_source(uri: str, what: str = "dataset.source") -> str:
    """dataset.source: a storage location, or dataset://NAME[@vN] (the dataset registry)."""
    if scheme_of(uri) != "dataset":
        return check_storage_uri(uri, what)
    _printable(uri, what)
    name, sep, version = uri.removeprefix("dataset://").partition("@")
    check_registry_name(name, what)
    if sep and not re.fullmatch(r"v?[1-9][0-9]{0,8}", version):
        raise ValueError(
            f"{what} {shorten(repr(uri))}: the version after '@' is v1, v2, ...; "
            f"e.g. dataset://{name}@v1 (or dataset://{name} for the latest)"
        )
    return uri


def check_model_uri(uri: str) -> str:
    """model.base: a hub id, a local folder, s3://bucket/prefix or builtin:<name>."""
    _printable(uri, "model location")
    scheme = scheme_of(uri)
    if scheme == "builtin":
        name = uri.split(":", 1)[1]
        if name not in BUILTIN_MODELS:
            raise ValueError(
                f"unknown built-in model {shorten(repr(name))}; choose one of "
                + ", ".join("builtin:" + m for m in BUILTIN_MODELS)
            )
        return uri
    if scheme in ("s3", "file"):
        return check_storage_uri(uri, "model location")
    if scheme:
        raise ValueError(
            f"model location {shorten(repr(uri))} has unsupported scheme "
            f"{shorten(repr(scheme), 40)}; use a Hugging Face "
            "id, a local folder, s3://bucket/prefix or builtin:<name>"
        )
    return _hub_id_or_path(uri, "")


def _hub_id_or_path(uri: str, what: str) -> str:
    if uri.startswith((".", "/", "~")) or _HF_ID.fullmatch(uri):
        return uri
    raise ValueError(
        f"{what}{shorten(repr(uri))} is neither a Hugging Face id (org/name) nor a local path"
    )


def check_tokenizer_uri(uri: str) -> str:
    """model.tokenizer: a hub id, a local folder or s3://bucket/prefix (fetched like the base).

    No builtin: (a built-in model brings its own tokenizer) and no file:// (a plain path is
    what the trainer hands to the tokenizer loader).
    """
    _printable(uri, "model.tokenizer")
    scheme = scheme_of(uri)
    if scheme == "s3":
        return check_storage_uri(uri, "model.tokenizer")
    if scheme == "builtin":
        raise ValueError(
            f"model.tokenizer {shorten(repr(uri))}: a built-in model brings its own tokenizer; "
            "remove model.tokenizer"
        )
    if scheme:
        raise ValueError(
            f"model.tokenizer {shorten(repr(uri))} has unsupported scheme "
            f"{shorten(repr(scheme), 40)}; use a Hugging Face "
            "id (org/name), a local folder or s3://bucket/prefix"
        )
    return _hub_id_or_path(uri, "model.tokenizer ")


_MLFLOW = re.compile(r"https?://[^\s/]+(/\S*)?|sqlite:///\S+")


def check_mlflow_uri(uri: str) -> str:
    """tracking.mlflowUri: an MLflow server (http(s)://) or a SQLite store (sqlite:///)."""
    _printable(uri, "tracking.mlflowUri")
    if not _MLFLOW.fullmatch(uri):
        raise ValueError(
            f"tracking.mlflowUri {shorten(repr(uri))} is not an MLflow tracking URI kubetune "
            "supports; use http(s)://host[:port] (a tracking server) or sqlite:///path/to/mlflow.db"
        )
    return uri


def is_remote(uri: str) -> bool:
    return scheme_of(uri) == "s3"


def run_prefix(output_uri: str, namespace: str, name: str) -> str:
    """Where one FineTuneJob's artifacts live: <output>/<namespace>/<name>."""
    return f"{output_uri.rstrip('/')}/{namespace}/{name}"


# -- credentials inside URLs (user:password@host) -------------------------------------------
# A URL's userinfo: after "scheme://", up to the first "@" before any "/", "?", "#" or blank.
# dataset://NAME@vN is a registry name and version (check_dataset_source), never userinfo.
_USERINFO = re.compile(
    r"(?P<scheme>\b(?!dataset://)[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/?#@\s]*)@"
)
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
    operator stores in the ConfigMap and what it puts in the job's own Secret instead.

    Copy on write: the input is never changed, and the result shares every section without
    a credential with it (read it, do not change it). A deep copy per call was a fifth of
    the operator's CPU per new job (bench/findings.md)."""
    out = dict(spec)
    env: dict[str, str] = {}
    for (section, key), user_env, password_env in URL_CREDENTIAL_FIELDS:
        part = out.get(section)
        url = part.get(key) if isinstance(part, dict) else None
        if not isinstance(url, str):
            continue
        clean, user, password = split_credentials(url)
        if user is None:
            continue
        part = out[section] = dict(part)  # this section only, before its URL changes
        part[key] = clean
        env[user_env] = user
        if password is not None:
            env[password_env] = password
    return out, env
