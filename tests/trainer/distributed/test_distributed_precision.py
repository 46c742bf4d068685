"""Ranks on unlike nodes meet on one precision through torchrun's store (distributed/agree.py),
before any process group exists: kubetune's launcher, real torchrun, two ranks."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune_api.constants import ExitCode
from tests.support.trainer.distributed import (
    HERE,
    PYTHON,
    Procs,
    job_manifest,
    operator_env,
    write_json,
)


@pytest.mark.parametrize(
    ("amx", "expected"), [(("1", "0"), "fp32"), (("1", "1"), "bf16"), (("0", "0"), "fp32")]
)
def test_ranks_on_unlike_cpus_agree_on_one_precision(
    tmp_path: Path,
    procs: Procs,
    port: int,
    base_env: dict[str, str],
    amx: tuple[str, str],
    expected: str,
) -> None:
    dist = {"nodes": 1, "processesPerNode": 2, "rendezvousTimeoutSeconds": 30}
    spec = write_json(
        tmp_path / "job.json",
        job_manifest(distributed=dist, output={"uri": "s3://bucket/runs"}),  # precision: auto
    )
    env = operator_env(
        base_env, spec, 1, 2, 0, port, 30,
        KT_RANK_PROGRAM="precision_program.py", KT_AMX_RANK0=amx[0], KT_AMX_RANK1=amx[1],
    )  # fmt: skip
    log_file = tmp_path / "node.log"
    proc = procs.start([PYTHON, str(HERE / "node_program.py")], env, log_file)
    assert proc.wait(120) == ExitCode.OK, log_file.read_text()
    log = log_file.read_text()
    assert f"rank 0 precision {expected}" in log and f"rank 1 precision {expected}" in log, log
    # Only a real disagreement is reported, once, by rank 0, naming each rank's verdict.
    assert log.count("resolved differently across ranks") == (amx[0] != amx[1]), log
    if amx[0] != amx[1]:
        assert "rank 0 bf16, rank 1 fp32" in log
