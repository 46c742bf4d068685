"""Image mode of the e2e kubelet: a pod's container run inside the built trainer image.

See tests/support/e2e/kubelet.py's docstring for what the mode honours; the runtime is
tests/support/containers.py (buildah + crun).
"""

from __future__ import annotations

from pathlib import Path

from tests.support.containers import Container, Mount, Rootfs, start
from tests.support.e2e.pods import LocalImage, Obj, PodFiles

# What the node sets on top of the image's ENV, in both modes: tests never reach a model hub.
NODE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def built_trainer_image(rootfs: Rootfs) -> LocalImage:
    """The built image's own ENV/ENTRYPOINT/WORKDIR (image mode), plus NODE_ENV."""
    return LocalImage(
        Path("/opt/kubetune/bin"),
        {**rootfs.env(), **NODE_ENV},
        entrypoint=tuple(rootfs.config.get("Entrypoint") or ()),
        workdir=rootfs.config.get("WorkingDir") or "/",
    )


def start_in_image(
    rootfs: Rootfs,
    pod: Obj,
    files: PodFiles,
    env: dict[str, str],
    argv: list[str],
    hosts: dict[str, str],
    namespace: str,
    log_path: Path,
) -> Container:
    """Start the pod's first container: its volumes and termination-message file as bind
    mounts, its user, working dir and hostname, /etc/hosts with `hosts`."""
    spec = pod["spec"]
    container = spec["containers"][0]
    hostname = spec.get("hostname") or pod["metadata"]["name"]
    mounts = [Mount(path, target) for target, path in files.mounts.items()]
    if files.termination_log is not None:
        mounts.append(Mount(files.termination_log, files.termination_path))
    with open(log_path, "ab") as log:
        return start(
            rootfs, argv, env=env, mounts=mounts, user=_run_as(pod, container),
            cwd=container.get("workingDir"), hostname=hostname,
            hosts=hosts, own_names=_own_names(pod, namespace), stdout=log,
        )  # fmt: skip


def _own_names(pod: Obj, namespace: str) -> list[str]:
    """The pod's fully qualified name, as the kubelet writes it first in the pod's /etc/hosts."""
    spec = pod["spec"]
    host, sub = spec.get("hostname"), spec.get("subdomain")
    return [f"{host}.{sub}.{namespace}.svc.cluster.local"] if host and sub else []


def _run_as(pod: Obj, container: Obj) -> tuple[int, int] | None:
    """runAsUser/runAsGroup of the container, else of the pod; None: the image's USER."""
    pod_sc, sc = pod["spec"].get("securityContext") or {}, container.get("securityContext") or {}
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", uid))
    return None if uid is None else (int(uid), int(gid))
