"""Run torchrun inside this process and turn its outcome into one exit code.

torchrun is run in-process (torch.distributed.run) rather than exec'd so its typed
failures are visible: ChildFailedError carries every local rank's exit code, and the
rendezvous raises RendezvousError subclasses. As a separate program it would only say 1.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import NoReturn

from kubetune_api.constants import ExitCode

from .exitcodes import node_exit_code

log = logging.getLogger(__name__)


def run_torchrun(args: list[str]) -> int:
    """Run `torchrun ARGS` (ARGS without the program name); return the node's exit code."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(args))
    except ChildFailedError as exc:
        codes = {rank: f.exitcode for rank, f in exc.failures.items()}
        code = node_exit_code(codes.values())
        log.error("ranks failed with exit codes %s -> exit %d", codes, code)
        return code
    except RendezvousError as exc:
        # Nodes did not meet within the timeout, or pod 0's store went away: another
        # attempt (new pods, new rendezvous id) may well succeed.
        log.error("rendezvous failed (%s: %s) -> exit %d", type(exc).__name__, exc,
                  ExitCode.RETRYABLE)  # fmt: skip
        return ExitCode.RETRYABLE
    except SignalException as exc:
        # torchrun already passed the signal to the ranks and waited for them: SIGTERM is
        # how Kubernetes preempts/evicts/suspends, and the ranks checkpoint on it.
        if exc.sigval == signal.SIGTERM:
            log.warning("SIGTERM: ranks stopped -> exit %d", ExitCode.PREEMPTED)
            return ExitCode.PREEMPTED
        log.error("stopped by %s -> exit %d", exc.sigval.name, ExitCode.RETRYABLE)
        return ExitCode.RETRYABLE
    return ExitCode.OK


def exec_direct(cmd: list[str]) -> NoReturn:
    """One process: become `train` (same PID, so signals and the exit code pass straight)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(cmd[0], cmd)
