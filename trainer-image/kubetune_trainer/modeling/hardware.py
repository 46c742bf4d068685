"""What this process runs on: device, memory, precision support, library versions.

Start-up validation that knows the hardware lives here (the spec cannot know it):
fp16 or paged/8-bit optimizers without CUDA are refused naming the field to change.

Memory on a CPU is the host's unless the process runs under a cgroup memory limit smaller
than the host (a Kubernetes pod's resources.limits.memory): then the limit is the total
and what the cgroup has left is the available memory, so the preflight and its 80% rule
see the pod's memory, not the node's.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch

from kubetune_api.spec import FineTuneJobSpec
from kubetune_trainer import allocator
from kubetune_trainer.distributed.agree import common_precision
from kubetune_trainer.distributed.runtime import world_size
from kubetune_trainer.errors import ConfigError

from .cpu_precision import cpu_bf16_fast

_LIBS = ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "deepspeed")
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class SystemReport:
    device: str  # "cuda" or "cpu"
    device_name: str
    device_count: int
    memory_total_bytes: int  # per GPU, or host RAM (the cgroup limit when smaller)
    memory_available_bytes: int
    cpu_count: int
    bf16_supported: bool
    python: str
    versions: dict[str, str] = field(default_factory=dict)
    # bf16 matmuls run on AMX tiles (CPU only); without AMX, bf16 works but is not faster.
    cpu_amx: bool = False
    # CPU only: a bf16-autocast training step measured at most 0.8x of fp32 here
    # (cpu_precision.py; None where not measured: no bf16, a GPU, or an explicit precision:
    # resolve_precision measures it for `auto` alone).
    cpu_bf16_fast: bool | None = None
    # Where the memory figures come from: "host", "cgroup v2 memory.max",
    # "cgroup v1 memory.limit_in_bytes" or "cuda:<local rank>".
    memory_source: str = "host"
    # The process's malloc: "jemalloc" when `kubetune` preloaded it (allocator.py).
    allocator: str = "system"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        gib = 1024**3
        libs = ", ".join(f"{k} {v}" for k, v in self.versions.items())
        return (
            f"device: {self.device} x{self.device_count} ({self.device_name}), memory "
            f"{self.memory_available_bytes / gib:.1f} of {self.memory_total_bytes / gib:.1f} GiB "
            f"free ({self.memory_source}), {self.cpu_count} CPU cores, "
            f"bf16 {'yes' if self.bf16_supported else 'no'}, malloc {self.allocator}; "
            f"python {self.python}; {libs}"
        )


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_bf16_supported() -> bool:
    """bf16 pays off on CPUs with AVX512/AMX; elsewhere it is emulated and slow."""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AVX512_BF16", "AMX"):
        return False
    try:  # the capability string is a hint; make sure a bf16 matmul really runs
        a = torch.ones(4, 4, dtype=torch.bfloat16)
        return bool((a @ a)[0, 0].item() == 4.0)
    except RuntimeError:
        return False


def cpu_has_amx() -> bool:
    """AMX (amx_bf16) is what makes bf16 fast on a CPU; avx512_bf16 alone does not.

    Measured (bench/, 2-core Xeon with avx512_bf16 but no AMX): LoRA steps under
    bf16 autocast took 1.2-1.6x as long as fp32 (weights cast every step, bf16 GEMM no faster).
    """
    if torch.backends.cpu.get_cpu_capability() == "AMX":
        return True
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and "amx_bf16" in line.split() for line in f)
    except OSError:
        return False


@dataclass(frozen=True)
class MemoryLimit:
    total: int  # the limit
    available: int  # the limit minus the working set
    source: str


def _read_int(path: Path) -> int | None:
    """A cgroup value file's number; None when missing, unreadable or "max" (no limit)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def cgroup_memory(root: str | Path = CGROUP_ROOT) -> MemoryLimit | None:
    """This container's memory limit, from cgroup v2 (`memory.max`, `memory.current`) or
    v1 (`memory/memory.limit_in_bytes`, `memory/memory.usage_in_bytes`) under `root`;
    None without a limit ("max") or without those files.

    Available = limit - working set, the working set being usage minus the inactive page
    cache (memory.stat inactive_file, v1 total_inactive_file), as the kubelet counts it:
    the kernel reclaims that cache before the limit OOM-kills the pod.
    """
    root = Path(root)
    if (root / "memory.max").is_file():
        folder, source = root, "cgroup v2 memory.max"
        limit, usage = _read_int(root / "memory.max"), _read_int(root / "memory.current")
        inactive = _stat(root / "memory.stat", "inactive_file")
    elif (root / "memory" / "memory.limit_in_bytes").is_file():
        folder, source = root / "memory", "cgroup v1 memory.limit_in_bytes"
        limit = _read_int(folder / "memory.limit_in_bytes")
        usage = _read_int(folder / "memory.usage_in_bytes")
        inactive = _stat(folder / "memory.stat", "total_inactive_file")
    else:
        return None
    if limit is None:
        return None
    working = max((usage or 0) - inactive, 0)
    return MemoryLimit(limit, max(limit - working, 0), source)


def host_memory(cgroup_root: str | Path = CGROUP_ROOT) -> tuple[int, int, str]:
    """(total, available, source) of the memory this process may use on the host: the
    cgroup's limit when it is smaller than the host's RAM, else the host's."""
    vm = psutil.virtual_memory()
    limit = cgroup_memory(cgroup_root)
    if limit is not None and limit.total < vm.total:
        return limit.total, min(limit.available, vm.available), limit.source
    return vm.total, vm.available, "host"


def local_device_index(env: Mapping[str, str], device_count: int) -> int:
    """The GPU this process uses: torchrun's LOCAL_RANK (0 without torchrun); ConfigError
    when there are fewer visible GPUs than processes on the node."""
    raw = env.get("LOCAL_RANK", "0")
    if not raw.isdigit():
        raise ConfigError(f"LOCAL_RANK={raw!r} is not a rank number (it is set by torchrun)")
    index = int(raw)
    if index >= device_count:
        raise ConfigError(
            f"local rank {index} needs GPU {index}, but {device_count} CUDA device(s) are "
            "visible: set distributed.processesPerNode to at most resources.gpusPerNode"
        )
    return index


def system_report(cgroup_root: str | Path = CGROUP_ROOT) -> SystemReport:
    """This machine; `cgroup_root`: where the cgroup files are read (a test's folder)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = {n: _version(n) for n in _LIBS}
    if torch.cuda.is_available():  # pragma: no cover - CUDA only (tests/trainer/gpu)
        index = local_device_index(os.environ, torch.cuda.device_count())
        # Select this rank's own GPU first: querying device 0 from every rank would open a
        # CUDA context on GPU 0 per rank (and report GPU 0's memory to all of them).
        torch.cuda.set_device(index)
        free, total = torch.cuda.mem_get_info(index)
        return SystemReport(
            device="cuda",
            device_name=torch.cuda.get_device_name(index),
            device_count=torch.cuda.device_count(),
            memory_total_bytes=total,
            memory_available_bytes=free,
            cpu_count=cpus or 1,
            bf16_supported=torch.cuda.is_bf16_supported(),
            python=platform.python_version(),
            versions=versions,
            memory_source=f"cuda:{index}",
            allocator=allocator.in_use(),
        )
    total, available, source = host_memory(cgroup_root)
    return SystemReport(
        device="cpu",
        device_name=_cpu_name(),
        device_count=1,
        memory_total_bytes=total,
        memory_available_bytes=available,
        cpu_count=cpus or 1,
        bf16_supported=cpu_bf16_supported(),
        python=platform.python_version(),
        versions=versions,
        cpu_amx=cpu_has_amx(),
        memory_source=source,
        allocator=allocator.in_use(),
    )


def resolve_precision(spec: FineTuneJobSpec, system: SystemReport) -> str:
    """'bf16', 'fp16' or 'fp32' for this machine, or ConfigError naming the field."""
    wanted = spec.training.precision
    cuda = system.device == "cuda"
    if wanted == "fp16" and not cuda:
        raise ConfigError(
            "spec.training.precision: fp16 needs a CUDA GPU and this machine has none; "
            "set precision: bf16 or auto (bf16 where supported, else fp32)"
        )
    if wanted == "bf16" and not system.bf16_supported:
        raise ConfigError(
            f"spec.training.precision: bf16 is not supported on this {system.device} "
            f"({system.device_name}); set precision: auto or fp32"
        )
    if wanted == "auto":
        if system.device == "cpu" and system.bf16_supported and system.cpu_bf16_fast is None:
            if world_size() > 1:
                # Every rank must resolve the same precision, and a timing on each rank can
                # disagree under load: one rank in bf16 (its frozen weights stored in bf16)
                # and another in fp32 broke DDP's first broadcast with a gloo size mismatch.
                # Ranks go by the CPU's AMX flag instead: the same on like nodes.
                system.cpu_bf16_fast = system.cpu_amx
            else:
                # Measured (or read from the cache) only when the answer decides something:
                # not for an explicit precision, a GPU, or the notebook's environment() view.
                system.cpu_bf16_fast = cpu_bf16_fast(system.device_name)
        # Unlike nodes (AMX and not, a GPU without bf16) still differ: all ranks meet on one.
        timeout = float(spec.distributed.rendezvous_timeout_seconds)
        return common_precision(auto_precision(system), timeout)
    return wanted


def auto_precision(system: SystemReport) -> str:
    """`precision: auto`: bf16 on a GPU that supports it; on a CPU, bf16 only where a
    training step in bf16 autocast was measured to pay (cpu_precision.py), else fp32.

    CPU flags alone mislead: with avx512_bf16 but no AMX, bf16 LoRA steps run at 0.62x of
    fp32 (bench/findings.md), yet torch reports bf16 as supported there.
    """
    if system.device == "cuda":
        return "bf16" if system.bf16_supported else "fp32"
    return "bf16" if system.bf16_supported and system.cpu_bf16_fast else "fp32"


def check_hardware(spec: FineTuneJobSpec, system: SystemReport) -> None:
    """Refuse settings that cannot work on this machine before any loading starts."""
    cuda = system.device == "cuda"
    if spec.training.optimizer in ("paged_adamw_8bit", "adamw_8bit") and not cuda:
        raise ConfigError(
            f"spec.training.optimizer: {spec.training.optimizer} needs a CUDA GPU "
            "(bitsandbytes paged/8-bit optimizers); use adamw_torch on this machine"
        )
    # training.engine unsloth: checked in full (GPU, package, options) by unsloth_backend.
    if spec.model.attn_implementation == "flash_attention_2" and not cuda:
        raise ConfigError(
            "spec.model.attnImplementation: flash_attention_2 needs a CUDA GPU; use auto or sdpa"
        )
    if spec.quantization.compute_dtype == "fp16" and not cuda:
        raise ConfigError(
            "spec.quantization.computeDtype: fp16 needs a CUDA GPU; use auto, bf16 or fp32"
        )


def torch_dtype(precision: str) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
