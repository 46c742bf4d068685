"""A kubelet and Job controller for one namespace of the API emulator, on this machine.

`Kubelet` polls the emulator over HTTP (like any client) and, for every Indexed Job:

* creates one Pod per completion index (`<job>-<index>-xxxxx`, hostname `<job>-<index>`,
  labels/annotation `batch.kubernetes.io/job-completion-index`, JOB_COMPLETION_INDEX from
  the downward API, ownerReference to the Job so deleting the Job deletes its pods);
* runs each pod's first container as a local process (its own process group): the
  container's `command` + `args`, the image's entrypoint otherwise, resolved on the image's
  PATH (`LocalImage`: every image maps to this repository's .venv);
* reports pod status (Pending -> Running with podIP 127.0.0.1 -> Succeeded/Failed with
  exit code, reason and the termination message) and Job status (active, ready,
  succeeded, failed, completedIndexes, Complete/Failed conditions) as Kubernetes would.

Pod-spec fields honoured: containers[0].command/args/env (value, `$(VAR)` expansion,
valueFrom fieldRef/secretKeyRef/configMapKeyRef)/envFrom (secretRef/configMapRef, prefix,
optional)/workingDir/terminationMessagePath/terminationMessagePolicy (File,
FallbackToLogsOnError: last 80 lines or 2048 bytes of the log); volumes configMap (files
written, `items` ignored: every key), secret (decoded files), emptyDir (a fresh folder),
persistentVolumeClaim (one folder per claim name on this node, kept across pods),
each mounted by rewriting environment values that name a path under its mountPath (there
are no mount namespaces here: this is the only path remapping, and it covers
KUBETUNE_SPEC_FILE, HOME, the caches and the termination log); hostname/subdomain (DNS:
an env value `<hostname>.<subdomain>[.<ns>[.svc[.cluster.local]]]` of a pod in the
namespace becomes its pod IP, 127.0.0.1); terminationGracePeriodSeconds (SIGTERM to the
main process, SIGKILL to the group after the grace period); Job completions/parallelism
(all indexes at once), backoffLimit (Failed when exceeded; the remaining pods are
deleted), podFailurePolicy (FailJob/Ignore/Count on exit codes and pod conditions; the
Failed condition says which rule, as Kubernetes writes it), suspend (no pods).

Mapped for one host: KUBETUNE_MASTER_PORT becomes one free port per Job (every pod of the
Job uses it), so concurrent jobs never race for the rendezvous port; the metrics server
binds the pod IP (KUBETUNE_METRICS_ADDR=127.0.0.1) on the spec's port, which is where the
operator scrapes it; /tmp is the pod's `tmp` volume (TMPDIR). Containers of a new pod wait
(ContainerCreating) while another pod's processes are still terminating, as if the node
released its ports first.

Ignored: init and sidecar containers, every container after the first, resources
(requests/limits, GPUs), securityContext, nodeSelector/affinity/tolerations/priority
(everything is scheduled on one node at once), probes, imagePullPolicy, service links
(no KUBERNETES_SERVICE_* variables: the trainer never talks to the API), volume `items`
and `defaultMode`, hostPath volumes (the pod stays Pending), whether a claimed PVC exists
and its `readOnly`, activeDeadlineSeconds,
replacement pods (backoffLimit > 0 is counted but no pod is re-created).

Image mode (`Kubelet(rootfs=...)`, the scenarios marked `in_image`): each pod's container
runs inside the trainer image built by `make images` (tests/support/containers.py: crun on the
image's root filesystem, read-only, as the pod's runAsUser/runAsGroup, its own PID namespace
so tini is PID 1, the host's network). Its volumes and termination-message file are real bind
mounts there (no path remapping); env, command/args, workingDir and hostname are the pod's;
the image's own ENV is the base. The node adds HF_HUB_OFFLINE=1 (tests never reach a hub).
Signals go through the runtime (`crun kill`): SIGTERM to PID 1, SIGKILL to every process.

Deleting a pod (or its Job: garbage collection) keeps it, with deletionTimestamp, until its
processes are gone (a finalizer of ours stands in for graceful deletion); `kill()` is a
container dying (exit 128+signal) and `preempt()` a graceful node shutdown (DisruptionTarget
condition, SIGTERM, pod kept as Failed).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kubetune_api.constants import Env
from tests.support.containers import Container as OciContainer
from tests.support.containers import Rootfs
from tests.support.e2e.image import built_trainer_image, start_in_image
from tests.support.e2e.pods import (
    KUBELET_FINALIZER,
    POD_IP,
    LocalImage,
    MissingReference,
    Obj,
    PodFiles,
    container_env,
    disruption_condition,
    fallback_message,
    is_terminal,
    job_finished,
    job_status,
    now,
    pending_status,
    pod_for_index,
    pod_index,
    running_status,
    secret_data,
    terminated_status,
)
from tests.support.kube.cluster import api_path
from tests.support.net import free_port

VENV_BIN = Path(sys.executable).parent
# The trainer's bind-address variable (kubetune_trainer.reporting.prometheus.ADDR_ENV):
# a pod's server listens on its pod IP, here the loopback address every pod shares.
METRICS_ADDR_ENV = "KUBETUNE_METRICS_ADDR"
TICK = 0.2  # seconds between looks at the API (the emulator is in-process and cheap)


def local_trainer_image() -> LocalImage:
    """Dockerfile.trainer's ENV/WORKDIR/ENTRYPOINT with this repository's .venv as the image.

    Two deliberate differences: HF_HUB_OFFLINE=1 (tests never reach a model hub) and
    HOME=/tmp (the image's /home is on its read-only root filesystem here too).
    """
    env = {
        "VIRTUAL_ENV": str(VENV_BIN.parent),
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": "/tmp",
        "KUBETUNE_CACHE": "/cache/kubetune",
        "HF_HOME": "/cache/huggingface",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TORCH_EXTENSIONS_DIR": "/cache/torch_extensions",
        "TRITON_CACHE_DIR": "/cache/triton",
        "MPLCONFIGDIR": "/cache/matplotlib",
        "KUBETUNE_METRICS_PORT": "9400",
        # The sources under test, as the test process has them (not part of the image).
        **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
    }
    return LocalImage(VENV_BIN, env, entrypoint=("kubetune",), workdir="/workspace")


@dataclass
class Container:
    """One pod's running container (a local process group)."""

    pod_name: str
    job_uid: str
    index: int
    popen: subprocess.Popen[bytes]
    files: PodFiles
    log_path: Path
    started: str
    container_id: str
    grace: float
    policy: str
    term_sent_at: float | None = None
    disruption: Obj | None = None
    disruption_reported: bool = False
    reported: bool = False
    exit_code: int | None = None
    t_start: float = field(default_factory=time.monotonic)
    t_end: float | None = None
    oci: OciContainer | None = None  # image mode: the crun container (popen is crun)

    def send(self, sig: int) -> None:
        """SIGTERM to the main process (PID 1 in image mode); SIGKILL to every process."""
        if self.oci is not None:
            if sig == signal.SIGKILL:
                self.oci.kill_all()
            else:
                self.oci.signal(signal.Signals(sig))
        elif sig == signal.SIGKILL:
            _killpg(self.popen.pid, sig)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)

    def reap(self) -> None:
        """The container is over: no stray process of it survives."""
        if self.oci is not None:
            self.oci.kill_all()
            self.oci.delete()
        else:
            _killpg(self.popen.pid, signal.SIGKILL)

    def describe(self) -> str:
        """One line for failure reports: how long it ran and how it ended."""
        end = self.t_end if self.t_end is not None else time.monotonic()
        how = "running" if self.exit_code is None else f"exit code {self.exit_code}"
        return f"{self.pod_name}: pid {self.popen.pid}, {end - self.t_start:.1f} s, {how}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Kubelet:
    """Kubelet + Job controller for `namespace` of the emulator at `url` (see module doc)."""

    url: str
    namespace: str
    workdir: Path
    image: LocalImage = field(default_factory=local_trainer_image)
    rootfs: Rootfs | None = None  # image mode: run containers inside this built image
    containers: dict[str, Container] = field(default_factory=dict)  # pod uid -> container
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.rootfs is not None:
            self.image = built_trainer_image(self.rootfs)
        self.http = httpx.Client(base_url=self.url, timeout=10)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="e2e-kubelet", daemon=True)
        self._jobs_seen: set[str] = set()
        self._rdzv_ports: dict[str, int] = {}
        self._lost: dict[str, int] = {}  # job uid -> pods deleted before they ended
        self._counted_lost: set[str] = set()

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> Kubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the loop, then SIGKILL every process group still running (ours only)."""
        self._stop.set()
        self._thread.join(30)
        with self._lock:
            for c in self.containers.values():
                if c.alive():
                    c.send(signal.SIGKILL)
                    c.popen.wait(10)
                if c.oci is not None:
                    c.reap()
        self.http.close()

    # -- what tests use ------------------------------------------------------------------------
    def pods(self, job_name: str | None = None) -> list[Obj]:
        sel = {"labelSelector": f"job-name={job_name}"} if job_name else None
        resp = self.http.get(api_path("v1/pods", self.namespace), params=sel)
        return list(resp.json().get("items") or [])

    def container(self, pod_name: str) -> Container:
        with self._lock:
            for c in self.containers.values():
                if c.pod_name == pod_name:
                    return c
        raise KeyError(f"no container for pod {pod_name}")

    def live_pids(self) -> list[int]:
        with self._lock:
            return [c.popen.pid for c in self.containers.values() if c.alive()]

    def logs(self) -> dict[str, str]:
        """Every container log so far, by pod name."""
        with self._lock:
            return {c.pod_name: c.log() for c in self.containers.values()}

    def timeline(self) -> list[str]:
        with self._lock:
            return [c.describe() for c in self.containers.values()]

    def kill(self, pod_name: str, sig: int = signal.SIGKILL) -> None:
        """The container dies at once (signal to its whole process group): exit 128+sig."""
        c = self.container(pod_name)
        if c.oci is not None:
            c.oci.signal_all(signal.Signals(sig))
        else:
            _killpg(c.popen.pid, sig)

    def preempt(
        self,
        pod_name: str,
        reason: str = "TerminationByKubelet",
        message: str = "Pod was terminated in response to imminent node shutdown.",
    ) -> None:
        """Graceful node shutdown: DisruptionTarget on the pod, SIGTERM, SIGKILL after grace."""
        with self._lock:
            c = self.container(pod_name)
            c.disruption = disruption_condition(reason, message)
            self._signal_term(c)

    # -- the loop ------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._lock:
                    self._tick()
            except Exception:  # keep playing the node; the test sees the error list
                self.errors.append(traceback.format_exc())
            self._stop.wait(TICK)

    def _list(self, res: str) -> list[Obj]:
        resp = self.http.get(api_path(res, self.namespace))
        resp.raise_for_status()
        return list(resp.json().get("items") or [])

    def _patch(self, res: str, name: str, body: Obj, status: bool = False) -> None:
        path = api_path(res, self.namespace, name, "status" if status else "")
        resp = self.http.patch(
            path, json=body, headers={"Content-Type": "application/merge-patch+json"}
        )
        if resp.status_code not in (200, 201, 404):  # 404: deleted meanwhile, nothing to do
            resp.raise_for_status()

    def _tick(self) -> None:
        jobs = self._list("batch/v1/jobs")
        for job in jobs:
            self._create_pods(job)
        pods = self._list("v1/pods")
        for pod in pods:
            if KUBELET_FINALIZER in (pod["metadata"].get("finalizers") or []):
                self._sync_pod(pod, pods)
        pods = self._list("v1/pods")
        for job in jobs:
            self._sync_job(job, pods)

    # -- Job controller ------------------------------------------------------------------------
    def _create_pods(self, job: Obj) -> None:
        uid = job["metadata"]["uid"]
        if uid in self._jobs_seen or job["metadata"].get("deletionTimestamp"):
            return
        if (job["spec"] or {}).get("suspend") or job_finished(job):
            return
        self._jobs_seen.add(uid)
        self._rdzv_ports[uid] = free_port()
        completions = int(job["spec"].get("completions") or 1)
        for index in range(completions):
            body = pod_for_index(job, index)
            resp = self.http.post(api_path("v1/pods", self.namespace), json=body)
            resp.raise_for_status()
            pod = resp.json()
            self._patch("v1/pods", pod["metadata"]["name"], {"status": pending_status(pod)}, True)

    def _sync_job(self, job: Obj, pods: list[Obj]) -> None:
        meta = job["metadata"]
        uid = meta["uid"]
        if uid not in self._jobs_seen or meta.get("deletionTimestamp"):
            return
        mine = [p for p in pods if _owner_uid(p) == uid]
        # A pod deleted before it ended is counted once, as lost, whatever status it ends with.
        counted = [p for p in mine if p["metadata"]["uid"] not in self._counted_lost]
        old = job.get("status") or {}
        new = job_status(job, counted, self._lost.get(uid, 0), old)
        if new != old:
            self._patch("batch/v1/jobs", meta["name"], {"status": new}, status=True)
        if job_finished({"status": new}) == "Failed":
            # The Job controller deletes the pods still running once the Job has failed.
            for p in mine:
                if not is_terminal(p) and not p["metadata"].get("deletionTimestamp"):
                    self.http.delete(api_path("v1/pods", self.namespace, p["metadata"]["name"]))

    # -- kubelet -------------------------------------------------------------------------------
    def _sync_pod(self, pod: Obj, pods: list[Obj]) -> None:
        meta = pod["metadata"]
        uid, name = meta["uid"], meta["name"]
        c = self.containers.get(uid)
        if meta.get("deletionTimestamp"):
            if not is_terminal(pod) and uid not in self._counted_lost:
                self._counted_lost.add(uid)
                job_uid = _owner_uid(pod)
                self._lost[job_uid] = self._lost.get(job_uid, 0) + 1
            if c is not None and c.alive():
                self._signal_term(c)
                self._escalate(c)
                return
            if c is not None and not c.reported:
                self._report_exit(pod, c)
            # Processes gone: the pod may go (graceful deletion ends).
            self._patch("v1/pods", name, {"metadata": {"finalizers": None}})
            return
        if c is None:
            if is_terminal(pod):
                return
            if any(x.alive() and x.term_sent_at is not None for x in self.containers.values()):
                return  # the node frees the ports of terminating pods first
            self._start(pod, pods)
            return
        if c.disruption is not None and not c.disruption_reported and c.alive():
            status = running_status(pod, c.started, c.container_id)
            status["conditions"].append(c.disruption)
            self._patch("v1/pods", name, {"status": status}, status=True)
            c.disruption_reported = True
        if not c.alive() and not c.reported:
            self._report_exit(pod, c)
        elif c.alive():
            self._escalate(c)

    def _signal_term(self, c: Container) -> None:
        if c.term_sent_at is None and c.alive():
            c.term_sent_at = time.monotonic()
            # The runtime signals the container's main process; it forwards to its children.
            c.send(signal.SIGTERM)

    def _escalate(self, c: Container) -> None:
        if c.term_sent_at is not None and time.monotonic() - c.term_sent_at > c.grace:
            c.send(signal.SIGKILL)

    def _report_exit(self, pod: Obj, c: Container) -> None:
        rc = c.popen.returncode
        code = 128 - rc if rc < 0 else rc  # a signal N shows as exit code 128+N
        c.exit_code = code
        c.t_end = time.monotonic()
        message = ""
        if c.files.termination_log is not None and c.files.termination_log.exists():
            message = c.files.termination_log.read_text(errors="replace").strip()
        if not message and code != 0 and c.policy == "FallbackToLogsOnError":
            message = fallback_message(c.log())
        status = terminated_status(pod, c.started, c.container_id, code, message, c.disruption)
        self._patch("v1/pods", pod["metadata"]["name"], {"status": status}, status=True)
        c.reported = True
        # The container's processes are gone for good: reap stray children of its group.
        c.reap()

    def _start(self, pod: Obj, pods: list[Obj]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        container = spec["containers"][0]
        root = self.workdir / meta["name"]
        try:
            files = self._volumes(pod, root)
            env = container_env(pod, container, self.image, self._secrets(), self._configmaps())
        except MissingReference as exc:
            shutil.rmtree(root, ignore_errors=True)
            status = pending_status(pod, "CreateContainerConfigError", str(exc))
            self._patch("v1/pods", meta["name"], {"status": status}, status=True)
            return
        hosts = _pod_dns_names(pods, self.namespace)
        if self.rootfs is not None:  # real mounts: only the DNS names change
            env = {k: hosts.get(v, v) for k, v in env.items()}
        else:
            # Only the pod's own values are container paths; the image's local ENV (PATH,
            # VIRTUAL_ENV) is already a host path, which a clone under /tmp would see remapped.
            # A value the pod sets is the pod's even when the image has the same one
            # (KUBETUNE_CACHE=/cache/kubetune): it goes to the pod's volume, not the host's.
            own = {e["name"] for e in container.get("env") or []}
            env = {
                k: v
                if k not in own and self.image.env.get(k) == v
                else hosts.get(v, files.remap(v))
                for k, v in env.items()
            }
        job_uid = _owner_uid(pod)
        if Env.MASTER_PORT in env and job_uid in self._rdzv_ports:
            env[Env.MASTER_PORT] = str(self._rdzv_ports[job_uid])
        env[METRICS_ADDR_ENV] = POD_IP  # the pod IP: where the operator scrapes /metrics
        if "/tmp" in files.mounts and self.rootfs is None:
            env["TMPDIR"] = str(files.mounts["/tmp"])
        command = container.get("command") or self.image.entrypoint
        argv = [*command, *(container.get("args") or [])]
        argv = [_expand(a, env) for a in argv]
        if self.rootfs is not None:
            # Its /etc/hosts: every pod's hostname and DNS names (torch publishes the hostname
            # of rendezvous rank 0 to the other nodes' workers).
            names = {p["spec"]["hostname"]: POD_IP for p in pods if p["spec"].get("hostname")}
            self._start_in_image(pod, files, env, argv, {**names, **hosts})
            return
        exe = argv[0] if os.path.isabs(argv[0]) else shutil.which(argv[0], path=env.get("PATH"))
        if exe is None:
            status = pending_status(pod, "RunContainerError", f"{argv[0]}: not found in $PATH")
            self._patch("v1/pods", meta["name"], {"status": status}, status=True)
            return
        cwd = Path(files.remap(container.get("workingDir") or self.image.workdir))
        if not str(cwd).startswith(str(root)):
            cwd = root / "rootfs" / str(cwd).lstrip("/")
        cwd.mkdir(parents=True, exist_ok=True)
        log_path = root / "container.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                [exe, *argv[1:]], env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        started = now()
        c = Container(
            pod_name=meta["name"],
            job_uid=job_uid,
            index=pod_index(pod),
            popen=popen,
            files=files,
            log_path=log_path,
            started=started,
            container_id=f"local://{popen.pid}-{uuid.uuid4().hex[:8]}",
            grace=float(spec.get("terminationGracePeriodSeconds", 30)),
            policy=container.get("terminationMessagePolicy", "File"),
        )
        self.containers[meta["uid"]] = c
        status = running_status(pod, started, c.container_id)
        self._patch("v1/pods", meta["name"], {"status": status}, status=True)

    def _start_in_image(
        self, pod: Obj, files: PodFiles, env: dict[str, str], argv: list[str], hosts: dict
    ) -> None:
        """Image mode: the container runs in the built image (see the module docstring)."""
        assert self.rootfs is not None
        meta, spec = pod["metadata"], pod["spec"]
        container = spec["containers"][0]
        log_path = files.root / "container.log"
        oci = start_in_image(self.rootfs, pod, files, env, argv, hosts, self.namespace, log_path)
        started = now()
        c = Container(
            pod_name=meta["name"],
            job_uid=_owner_uid(pod),
            index=pod_index(pod),
            popen=oci.proc,
            files=files,
            log_path=log_path,
            started=started,
            container_id=f"crun://{oci.id}",
            grace=float(spec.get("terminationGracePeriodSeconds", 30)),
            policy=container.get("terminationMessagePolicy", "File"),
            oci=oci,
        )
        self.containers[meta["uid"]] = c
        status = running_status(pod, started, c.container_id)
        self._patch("v1/pods", meta["name"], {"status": status}, status=True)

    def _volumes(self, pod: Obj, root: Path) -> PodFiles:
        spec = pod["spec"]
        container = spec["containers"][0]
        files = PodFiles(root)
        local: dict[str, Path] = {}
        for vol in spec.get("volumes") or []:
            if "persistentVolumeClaim" in vol:  # outlives its pods: one folder per claim
                d = self.workdir / "claims" / vol["persistentVolumeClaim"]["claimName"]
                d.mkdir(parents=True, exist_ok=True)
                d.chmod(0o777)
                local[vol["name"]] = d
                continue
            d = root / "volumes" / vol["name"]
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o777)  # an emptyDir is world-writable (the container runs as UID 1000)
            if "configMap" in vol or "secret" in vol:
                ref = vol.get("configMap") or vol.get("secret") or {}
                name = ref.get("name") or ref.get("secretName")
                is_secret = "secret" in vol
                obj = (self._secrets() if is_secret else self._configmaps()).get(name or "")
                if obj is None:
                    if ref.get("optional"):
                        local[vol["name"]] = d
                        continue
                    kind = "secret" if is_secret else "configmap"
                    raise MissingReference(f'MountVolume.SetUp failed: {kind} "{name}" not found')
                data = secret_data(obj) if is_secret else dict(obj.get("data") or {})
                for key, text in data.items():
                    (d / key).write_text(text)
            elif "emptyDir" not in vol:
                raise MissingReference(f"volume {vol['name']}: only configMap/secret/emptyDir")
            local[vol["name"]] = d
        for vm in container.get("volumeMounts") or []:
            path = local[vm["name"]] / vm.get("subPath", "")
            files.mounts[vm["mountPath"]] = path
        files.termination_path = container.get("terminationMessagePath", "/dev/termination-log")
        files.termination_log = root / "termination-log"
        files.termination_log.write_text("")
        files.termination_log.chmod(0o666)  # the container's user writes its summary there
        return files

    def _secrets(self) -> dict[str, Obj]:
        return {s["metadata"]["name"]: s for s in self._list("v1/secrets")}

    def _configmaps(self) -> dict[str, Obj]:
        return {s["metadata"]["name"]: s for s in self._list("v1/configmaps")}


def _owner_uid(obj: Obj) -> str:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == "Job":
            return str(ref["uid"])
    return ""


def _pod_dns_names(pods: list[Obj], namespace: str) -> dict[str, str]:
    """Cluster DNS for Indexed Job pods: <hostname>.<subdomain>[.<ns>[.svc[.cluster.local]]]."""
    out: dict[str, str] = {}
    for p in pods:
        spec = p.get("spec") or {}
        host, sub = spec.get("hostname"), spec.get("subdomain")
        if host and sub:
            base = f"{host}.{sub}"
            for suffix in ("", ".{0}", ".{0}.svc", ".{0}.svc.cluster.local"):
                out[base + suffix.format(namespace)] = POD_IP
    return out


_ARG_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _expand(arg: str, env: dict[str, str]) -> str:
    """`$(VAR)` in command/args expands from the container's environment."""
    return _ARG_REF.sub(lambda m: env.get(m.group(1), m.group(0)), arg)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
