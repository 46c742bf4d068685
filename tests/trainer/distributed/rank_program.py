"""A tiny torchrun rank for the launcher tests: all-reduces over gloo, then behaves as told.

KT_BEHAVIOUR (per rank: KT_BEHAVIOUR_RANK<r> overrides) is one of
  ok        all-reduce KT_STEPS times, print the sum, exit 0
  exit:<n>  exit with code n after the first all-reduce
  sigkill   SIGKILL itself after the first all-reduce (a crashed peer)
Ranks run inside kubetune's rank_session, as `kubetune train` does.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import torch
import torch.distributed as dist

from kubetune_trainer.distributed import exit_rank, rank_session
from kubetune_trainer.errors import TrainerError


def main() -> int:
    rank = int(os.environ["RANK"])
    behaviour = os.environ.get(f"KT_BEHAVIOUR_RANK{rank}", os.environ.get("KT_BEHAVIOUR", "ok"))
    steps = int(os.environ.get("KT_STEPS", "3"))
    try:
        with rank_session():
            dist.init_process_group("gloo", timeout=_timeout())
            total = 0.0
            for step in range(steps):
                t = torch.tensor([float(rank + 1)])
                dist.all_reduce(t)
                total += float(t)
                if step == 0:
                    print(f"rank {rank} training", flush=True)
                if step == 0 and behaviour.startswith("exit:"):
                    return int(behaviour.split(":", 1)[1])
                if step == 0 and behaviour == "sigkill":
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(float(os.environ.get("KT_STEP_SECONDS", "0")))
            print(f"rank {rank} sum {total}", flush=True)
            return 0
    except TrainerError as exc:
        print(f"rank {rank}: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code


def _timeout():
    from datetime import timedelta

    return timedelta(seconds=int(os.environ.get("KUBETUNE_RDZV_TIMEOUT", "30")))


if __name__ == "__main__":
    exit_rank(main())
