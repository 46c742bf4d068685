"""Jobs as an API: submit a FineTuneJob, get an ID, poll, stream logs, read metrics, cancel.

Backends: the local queue and worker (local.py, worker.py, queue.py), a cluster's API
server (kube.py), and the HTTP API of a local queue (http_api.py, http_client.py).
No torch is imported here; the trainer runs in the worker's child processes.
"""

from __future__ import annotations

from .client import Client, JobRef, WaitTimeoutError
from .model import JobInfo, JobsError, UnknownJobError

__all__ = ["Client", "JobInfo", "JobRef", "JobsError", "UnknownJobError", "WaitTimeoutError"]
