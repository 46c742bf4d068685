"""`kubetune launch` with the rank program swapped for rank_program.py (or the program
named by KT_RANK_PROGRAM, a file beside this one).

Uses the launcher's own functions (read_launch_env, torchrun_args, run_torchrun) with the
operator's environment, so the launcher path is tested before the training engine runs.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from kubetune_api.loader import load_job
from kubetune_trainer.distributed.contract import read_launch_env
from kubetune_trainer.distributed.launcher import run_torchrun
from kubetune_trainer.distributed.torchrun import torchrun_args

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    job = load_job(os.environ["KUBETUNE_SPEC_FILE"])
    program = [str(Path(__file__).with_name(os.environ.get("KT_RANK_PROGRAM", "rank_program.py")))]
    sys.exit(run_torchrun(torchrun_args(read_launch_env(os.environ, job), program)))
