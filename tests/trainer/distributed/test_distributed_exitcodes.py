"""One exit code per node from its ranks' exit codes (what the operator reads), and how a
rank leaves."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kubetune_api.constants import ExitCode
from kubetune_trainer.distributed import node_exit_code


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([0, 0], ExitCode.OK),
        ([], ExitCode.OK),
        # A peer was SIGKILLed; the survivor was torn down by torchrun (SIGTERM).
        ([-9, -15], ExitCode.RETRYABLE),
        ([75, 1], ExitCode.RETRYABLE),
        # A bad spec fails every rank alike and must not be retried, even if a peer
        # noticed the loss first.
        ([75, 65], ExitCode.BAD_DATA),
        ([64, 64], ExitCode.INVALID_SPEC),
        ([75, 66], ExitCode.OOM),
        ([76, 75], ExitCode.PREEMPTED),
        ([70, 75], ExitCode.INTERNAL),
        ([0, 3], ExitCode.RETRYABLE),
    ],
)
def test_most_telling_code_wins(codes: list[int], expected: int) -> None:
    assert node_exit_code(codes) == expected


_EXITER = """
import atexit, logging, sys
from kubetune_trainer.distributed import exit_rank
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
atexit.register(lambda: print("teardown ran", flush=True))
print("buffered line")  # no flush: exit_rank must not lose it
logging.getLogger("t").info("logged line")
exit_rank(3)
"""


@pytest.mark.parametrize(("world", "teardown"), [("1", True), ("2", False)])
def test_exit_rank_keeps_output_and_skips_teardown_only_for_ranks(
    world: str, teardown: bool
) -> None:
    env = {**os.environ, "WORLD_SIZE": world}
    out = subprocess.run(
        [sys.executable, "-c", _EXITER], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 3
    assert "buffered line" in out.stdout and "logged line" in out.stderr
    assert ("teardown ran" in out.stdout) is teardown
