"""Run a built image as a container on this machine, the way a kubelet would.

There is no Docker engine here. buildah unpacks the image once into a
root filesystem (`buildah from` + `buildah mount`), and crun runs each container from it as
an OCI bundle: read-only root filesystem, the image's entrypoint/cmd/env/working dir (or the
pod's), a numeric user, bind mounts for the writable volumes (/tmp, /cache, ...), its own
PID namespace (so tini really is PID 1) and the host's network namespace (the test servers
on 127.0.0.1 stay reachable; a pod's IP is 127.0.0.1 in the e2e harness). Because the root
is read-only, every container of an image shares one unpacked root filesystem.

`buildah run` cannot give a read-only root or a PID namespace with chroot isolation, which
is why crun is called directly (buildah still owns the image storage).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import threading
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
TRAINER_IMAGE = os.environ.get(
    "KUBETUNE_TRAINER_IMAGE", f"localhost/kubetune/trainer:{VERSION}-cpu"
)
OPERATOR_IMAGE = os.environ.get("KUBETUNE_OPERATOR_IMAGE", f"localhost/kubetune/operator:{VERSION}")
BUILDAH_ENV = {**os.environ, "BUILDAH_ISOLATION": "chroot"}
# crun's state lives here (not /run/crun) so the test's containers never mix with others.
CRUN_ROOT = Path(os.environ.get("KUBETUNE_CRUN_ROOT", "/tmp/kubetune-crun"))
# crun refuses a "hybrid" cgroup layout (v1 controllers plus a v2 tree with a controller, as
# on this VM) even with cgroups disabled: it runs in its own mount namespace without the v2
# tree. Limits are not what these tests check.
CRUN_PREFIX = (
    ["unshare", "--mount", "--propagation", "private", "sh", "-c",
     'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"', "crun-hybrid"]
    if os.path.ismount("/sys/fs/cgroup/unified")
    else []
)  # fmt: skip
# The container inherits the open-files limit of this process (it may not raise it).
NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def tools_missing() -> list[str]:
    return [t for t in ("buildah", "crun") if shutil.which(t) is None]


def buildah(*args: str) -> str:
    out = subprocess.run(["buildah", *args], env=BUILDAH_ENV, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"buildah {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip()


def image_exists(image: str) -> bool:
    try:
        buildah("inspect", "--type", "image", image)
    except RuntimeError:
        return False
    return True


@dataclass
class Rootfs:
    """An image unpacked once (a buildah working container), shared read-only."""

    image: str
    container: str
    path: Path
    config: dict[str, Any]  # the image's OCI config: Env, Entrypoint, Cmd, WorkingDir, User

    @classmethod
    def open(cls, image: str) -> Rootfs:
        if not image_exists(image):
            raise RuntimeError(f"image {image} is not built: run `make images` first")
        info = json.loads(buildah("inspect", "--type", "image", image))
        container = buildah("from", "--pull-never", "--quiet", image)
        path = Path(buildah("mount", container))
        return cls(image, container, path, info["OCIv1"]["config"])

    def close(self) -> None:
        buildah("rm", self.container)

    def user(self) -> tuple[int, int]:
        """The image's USER (numeric, as both Dockerfiles set it); root when unset."""
        uid, _, gid = (self.config.get("User") or "0").partition(":")
        return int(uid), int(gid or uid)

    def env(self) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.config.get("Env") or [])


@dataclass
class Mount:
    source: Path  # on the host
    target: str  # in the container
    readonly: bool = False


@dataclass
class Container:
    """One crun container in the foreground: `proc` is crun itself (its exit code is the
    container's); signals go to the container's PID 1 through `crun kill`."""

    id: str
    bundle: Path
    proc: subprocess.Popen[bytes]
    _deleted: bool = field(default=False, repr=False)

    def signal(self, sig: signal.Signals) -> None:
        subprocess.run(
            ["crun", "--root", str(CRUN_ROOT), "kill", self.id, sig.name.removeprefix("SIG")],
            capture_output=True,
            check=False,
        )

    def exec(self, argv: list[str]) -> str:
        """Run a command inside the running container (as its user); its output."""
        out = subprocess.run(
            [*CRUN_PREFIX, "crun", "--root", str(CRUN_ROOT), "--cgroup-manager=disabled",
             "exec", self.id, *argv],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout

    def signal_all(self, sig: signal.Signals) -> None:
        """A signal to every process of the container."""
        subprocess.run(
            [
                "crun",
                "--root",
                str(CRUN_ROOT),
                "kill",
                "--all",
                self.id,
                sig.name.removeprefix("SIG"),
            ],
            capture_output=True,
            check=False,
        )

    def kill_all(self) -> None:
        """SIGKILL to every process of the container (a node losing the pod)."""
        self.signal_all(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        code = self.proc.wait(timeout)
        self.delete()
        return code

    def delete(self) -> None:
        if not self._deleted:
            self._deleted = True
            subprocess.run(
                ["crun", "--root", str(CRUN_ROOT), "delete", "--force", self.id],
                capture_output=True,
                check=False,
            )
            shutil.rmtree(self.bundle, ignore_errors=True)


def oci_config(
    rootfs: Rootfs,
    args: list[str],
    env: dict[str, str],
    mounts: list[Mount],
    user: tuple[int, int],
    cwd: str,
    hostname: str,
) -> dict[str, Any]:
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    binds = [
        {
            "destination": m.target,
            "type": "bind",
            "source": str(m.source),
            "options": ["rbind", "ro" if m.readonly else "rw"],
        }
        for m in mounts
    ]
    return {
        "ociVersion": "1.0.0",
        "process": {
            "terminal": False,
            "user": {"uid": user[0], "gid": user[1]},
            "args": args,
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": cwd,
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": NOFILE, "soft": NOFILE}],
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs.path), "readonly": True},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
            },
            # torch's DataLoader workers share tensors through /dev/shm.
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=1g"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            *binds,
        ],
        "linux": {
            # No network namespace: the host's (pods reach 127.0.0.1 as in the e2e harness).
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"],
        },
    }


def start(
    rootfs: Rootfs,
    command: list[str] | None = None,
    args: list[str] | None = None,
    *,
    env: dict[str, str] | None = None,
    mounts: list[Mount] = (),  # type: ignore[assignment]
    user: tuple[int, int] | None = None,
    cwd: str | None = None,
    hostname: str = "kubetune",
    hosts: dict[str, str] | None = None,
    own_names: list[str] | None = None,
    stdout: IO[bytes] | int | None = None,
    stderr: IO[bytes] | int | None = subprocess.STDOUT,
) -> Container:
    """Start a container as Kubernetes would: `command` replaces the image's entrypoint,
    `args` its cmd (args alone keep the entrypoint), `env` is laid over the image's."""
    entrypoint = rootfs.config.get("Entrypoint") or []
    argv = (
        (command or []) + (args or [])
        if command
        else entrypoint + (args if args is not None else rootfs.config.get("Cmd") or [])
    )
    full_env = {**rootfs.env(), **(env or {})}
    user = user or rootfs.user()
    workdir = cwd or rootfs.config.get("WorkingDir") or "/"
    cid = f"kt-{uuid.uuid4().hex[:12]}"
    bundle = CRUN_ROOT / "bundles" / cid
    bundle.mkdir(parents=True)
    # /etc/hosts as a kubelet writes it: the pod's own names first (so its fully qualified
    # name is what a reverse lookup of its IP returns: torchrun builds node ids from it, and
    # pods share 127.0.0.1 here), then localhost and (e2e) the other pods' DNS names. The
    # image's own /etc/hosts is an empty file (left by the build's RUN mounts).
    own = " ".join(dict.fromkeys([*(own_names or []), hostname, "localhost"]))
    others = {n: ip for n, ip in (hosts or {}).items() if n not in own.split()}
    lines = [f"127.0.0.1\t{own}", *(f"{ip}\t{n}" for n, ip in others.items())]
    (bundle / "hosts").write_text("\n".join(lines) + "\n")
    mounts = [*mounts, Mount(bundle / "hosts", "/etc/hosts", readonly=True)]
    config = oci_config(rootfs, argv, full_env, list(mounts), user, workdir, hostname)
    (bundle / "config.json").write_text(json.dumps(config))
    proc = subprocess.Popen(
        [
            *CRUN_PREFIX,
            "crun",
            "--root",
            str(CRUN_ROOT),
            "--cgroup-manager=disabled",
            "run",
            "--bundle",
            str(bundle),
            cid,
        ],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )
    return Container(cid, bundle, proc)


def run(rootfs: Rootfs, command: list[str] | None = None, args: list[str] | None = None,
        timeout: float = 300, **kw: Any) -> tuple[int, str]:  # fmt: skip
    """Run to the end; (exit code, combined output)."""
    c = start(rootfs, command, args, stdout=subprocess.PIPE, **kw)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(c.proc.stdout.read()))  # type: ignore[union-attr]
    reader.start()
    try:
        code = c.wait(timeout)
    except subprocess.TimeoutExpired:
        c.kill_all()
        code = c.wait(30)
    reader.join(30)
    return code, b"".join(chunks).decode(errors="replace")
