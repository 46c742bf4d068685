"""One exit code per node from its ranks' exit codes (what the operator reads)."""

from __future__ import annotations

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
