"""A small Kubernetes API client over urllib: kubeconfig or in-cluster credentials.

The trainer package must not import the kubernetes client or kopf (tests/unit/
test_import_boundaries.py), and `kubetune submit` should start fast: this reads the
kubeconfig's current context (server, CA, token or client certificate) and sends JSON.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .model import JobsError

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ApiError(JobsError):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


@dataclass
class KubeApi:
    server: str
    namespace: str = "default"
    headers: dict[str, str] = field(default_factory=dict)
    context: ssl.SSLContext | None = None
    timeout: float = 30.0

    def request(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None,
        content_type: str = "application/json", raw: bool = False,
    ) -> Any:  # fmt: skip
        url = self.server.rstrip("/") + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        headers = {**self.headers, "Accept": "application/json, */*"}
        if data is not None:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.context) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            try:
                message = json.loads(text).get("message") or text
            except ValueError:
                message = text
            raise ApiError(exc.code, f"{method} {path}: {exc.code} {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(0, f"cannot reach the Kubernetes API at {self.server}: {exc}") from None
        if raw:
            return payload.decode("utf-8", "replace")
        return json.loads(payload) if payload else {}


def load_api(kubeconfig: str | None = None, namespace: str | None = None) -> KubeApi:
    """From KUBECONFIG / ~/.kube/config, else the pod's service account (in-cluster)."""
    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    path = path.split(os.pathsep)[0]
    if Path(path).is_file():
        api = _from_kubeconfig(Path(path))
    elif os.environ.get("KUBERNETES_SERVICE_HOST") and (SA_DIR / "token").is_file():
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        ctx = ssl.create_default_context(cafile=str(SA_DIR / "ca.crt"))
        ns_file = SA_DIR / "namespace"
        ns = ns_file.read_text().strip() if ns_file.is_file() else "default"
        token = (SA_DIR / "token").read_text().strip()
        api = KubeApi(f"https://{host}:{port}", ns, {"Authorization": f"Bearer {token}"}, ctx)
    else:
        raise JobsError(
            f"no kubeconfig at {path} and not inside a pod: pass --kubeconfig FILE "
            "or set KUBECONFIG"
        )
    if namespace:
        api.namespace = namespace
    return api


def _from_kubeconfig(path: Path) -> KubeApi:
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
        ctx_name = cfg["current-context"]
        ctx = _named(cfg, "contexts", ctx_name)["context"]
        cluster = _named(cfg, "clusters", ctx["cluster"])["cluster"]
        user = (_named(cfg, "users", ctx["user"]).get("user") or {}) if ctx.get("user") else {}
    except (KeyError, TypeError, yaml.YAMLError, OSError) as exc:
        raise JobsError(
            f"kubeconfig {path}: cannot use it ({exc!s}): check current-context"
        ) from None
    server = cluster["server"]
    headers: dict[str, str] = {}
    if user.get("token"):
        headers["Authorization"] = f"Bearer {user['token']}"
    elif user.get("username"):
        pair = f"{user['username']}:{user.get('password', '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    context = None
    if server.startswith("https"):
        context = ssl.create_default_context(
            cafile=_file(cluster, "certificate-authority", path),
        )
        if cluster.get("insecure-skip-tls-verify"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        cert = _file(user, "client-certificate", path)
        if cert:
            context.load_cert_chain(cert, _file(user, "client-key", path))
    return KubeApi(server, ctx.get("namespace") or "default", headers, context)


def _named(cfg: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    for item in cfg.get(section) or []:
        if item.get("name") == name:
            return item
    raise KeyError(f"{section} has no entry {name!r}")


def _file(entry: dict[str, Any], key: str, config: Path) -> str | None:
    """A path from `key`, or `key-data` (base64) written to a private temporary file."""
    if entry.get(f"{key}-data"):
        fd, name = tempfile.mkstemp(prefix="kubetune-kube-")
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64decode(entry[f"{key}-data"]))
        return name
    if entry.get(key):
        return str((config.parent / entry[key]).resolve())
    return None
