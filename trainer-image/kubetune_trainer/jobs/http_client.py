"""The "http" backend: the Client's verbs sent to a `kubetune serve-api` (urllib, no deps).

The spec is read and validated here, as for the other backends, and sent as a manifest.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .model import InvalidJobError, JobInfo, JobsError, UnknownJobError, split_id
from .specs import load_for_submit


class HttpBackend:
    name = "http"

    def __init__(self, url: str | None, token: str | None = None, timeout: float = 30) -> None:
        if not url:
            raise JobsError(
                "--backend http needs --url (or KUBETUNE_API_URL), e.g. http://127.0.0.1:8600"
            )
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def _open(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("detail")
            except ValueError:
                detail = exc.reason
            err = {404: UnknownJobError, 422: InvalidJobError}.get(exc.code, JobsError)
            raise err(f"{self.url}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise JobsError(f"cannot reach the jobs API at {self.url}: {exc}") from None

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        with self._open(method, path, body) as resp:
            return json.loads(resp.read())

    @staticmethod
    def _job_path(job_id: str) -> str:
        ns, name = split_id(job_id)
        return f"/jobs/{ns}/{name}"

    def submit(self, spec: str | Path | dict[str, Any], overrides: list[str] | None = None) -> str:
        manifest = load_for_submit(spec, overrides or []).to_manifest()
        return str(self._json("POST", "/jobs", {"spec": manifest, "overrides": []})["id"])

    def get(self, job_id: str) -> JobInfo:
        return JobInfo.from_dict(self._json("GET", self._job_path(job_id)))

    def list(self) -> list[JobInfo]:
        return [JobInfo.from_dict(d) for d in self._json("GET", "/jobs")]

    def metrics(self, job_id: str) -> dict[str, Any]:
        return dict(self._json("GET", self._job_path(job_id) + "/metrics"))

    def cancel(self, job_id: str) -> JobInfo:
        return JobInfo.from_dict(self._json("POST", self._job_path(job_id) + "/cancel"))

    def logs(self, job_id: str, follow: bool = False, rank: int = 0) -> Iterator[str]:
        query = urllib.parse.urlencode({"follow": str(follow).lower(), "rank": rank})
        resp = self._open("GET", f"{self._job_path(job_id)}/logs?{query}", timeout=3600)
        with resp:
            for line in resp:
                yield line.decode("utf-8", "replace")
