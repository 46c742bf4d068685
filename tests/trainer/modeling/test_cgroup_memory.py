"""Memory inside a container: the cgroup's limit (v2 or v1) replaces the host's RAM when it
is smaller, so the preflight sees the pod's memory; the system line says which was read."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
import torch
from transformers import LlamaConfig

from kubetune_trainer.errors import OutOfMemoryError
from kubetune_trainer.modeling.hardware import cgroup_memory, system_report
from kubetune_trainer.modeling.preflight import GIB, preflight
from tests.support.builders import make_job

MIB = 1024**2
pytestmark = [
    pytest.mark.skipif(torch.cuda.is_available(), reason="host memory: the CPU path"),
    pytest.mark.usefixtures("trainer_env"),  # offline, own termination log (tests/trainer)
]


def _files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    return root


def test_cgroup_v2_limit_is_the_total_and_its_headroom_the_available(tmp_path: Path) -> None:
    root = _files(tmp_path, {
        "memory.max": str(2 * GIB),
        "memory.current": str(900 * MIB),
        "memory.stat": f"anon {500 * MIB}\nfile {400 * MIB}\ninactive_file {300 * MIB}",
    })  # fmt: skip
    system = system_report(cgroup_root=root)
    # The working set (usage less the reclaimable inactive page cache) counts against it.
    assert system.memory_total_bytes == 2 * GIB
    assert system.memory_available_bytes == 2 * GIB - (900 - 300) * MIB
    assert system.memory_source == "cgroup v2 memory.max"
    assert "memory 1.4 of 2.0 GiB free (cgroup v2 memory.max)" in system.summary()


def test_cgroup_v2_without_a_limit_is_the_host(tmp_path: Path) -> None:
    root = _files(tmp_path, {"memory.max": "max", "memory.current": str(900 * MIB)})
    assert cgroup_memory(root) is None
    system = system_report(cgroup_root=root)
    assert system.memory_total_bytes == psutil.virtual_memory().total
    assert system.memory_source == "host" and "GiB free (host)" in system.summary()


def test_cgroup_v1_limit(tmp_path: Path) -> None:
    root = _files(tmp_path, {
        "memory/memory.limit_in_bytes": str(3 * GIB),
        "memory/memory.usage_in_bytes": str(GIB),
        "memory/memory.stat": f"cache {GIB}\ninactive_file 1\ntotal_inactive_file {256 * MIB}",
    })  # fmt: skip
    system = system_report(cgroup_root=root)
    assert system.memory_total_bytes == 3 * GIB
    assert system.memory_available_bytes == 3 * GIB - (GIB - 256 * MIB)
    assert system.memory_source == "cgroup v1 memory.limit_in_bytes"


def test_a_limit_above_the_host_and_no_cgroup_files_leave_the_host(tmp_path: Path) -> None:
    # cgroup v1 writes "no limit" as a huge number: larger than the host, so the host counts.
    root = _files(tmp_path / "v1", {
        "memory/memory.limit_in_bytes": "9223372036854771712",
        "memory/memory.usage_in_bytes": str(GIB),
    })  # fmt: skip
    assert cgroup_memory(root) is not None
    for where in (root, tmp_path / "empty"):
        system = system_report(cgroup_root=where)
        assert system.memory_source == "host"
        assert system.memory_total_bytes == psutil.virtual_memory().total


def test_the_preflight_measures_against_the_pods_memory(tmp_path: Path) -> None:
    job = make_job(tmp_path / "out")
    small = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=4, vocab_size=512)  # fmt: skip
    host = system_report(cgroup_root=tmp_path / "none")
    assert preflight(job.spec, small, "fp32", host.memory_available_bytes, "cpu").ratio < 0.8
    # The same job in a pod limited to 768 MiB (the runtime overhead alone is 1 GiB).
    pod = system_report(cgroup_root=_files(tmp_path / "pod", {
        "memory.max": str(768 * MIB), "memory.current": "0",
    }))  # fmt: skip
    with pytest.raises(OutOfMemoryError, match=r"of 0\.75 GiB available"):
        preflight(job.spec, small, "fp32", pod.memory_available_bytes, "cpu")
