"""A torchrun rank that resolves `precision: auto` as `kubetune train` does, on a CPU that
has AMX or not as KT_AMX_RANK<r> says (a mixed node pool played on one machine)."""

from __future__ import annotations

import dataclasses
import logging
import os

from kubetune_api.loader import load_job
from kubetune_trainer.modeling import hardware

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    rank = int(os.environ["RANK"])
    amx = os.environ.get(f"KT_AMX_RANK{rank}", "1") == "1"
    here = dataclasses.replace(
        hardware.system_report(), device="cpu", bf16_supported=True, cpu_amx=amx,
        cpu_bf16_fast=None,
    )  # fmt: skip
    job = load_job(os.environ["KUBETUNE_SPEC_FILE"])
    print(f"rank {rank} precision {hardware.resolve_precision(job.spec, here)}", flush=True)
