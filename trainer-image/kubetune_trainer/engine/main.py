"""The process boundary: run a job, turn any failure into one clear paragraph, the
documented exit code and the termination-log summary the operator reads."""

from __future__ import annotations

import errno
import logging
import sys
import traceback
from typing import Any

from kubetune_api.constants import ExitCode
from kubetune_api.spec import FineTuneJob
from kubetune_api.termination import TerminationSummary
from kubetune_trainer.errors import WRITE_ERRNOS, TrainerError, write_error

from .progress import Progress
from .run import RunResult, run_job
from .termination import write_summary

log = logging.getLogger(__name__)


def _write_failure(exc: BaseException, phase: str) -> str | None:
    """The one-line message when `exc` (or what caused it) is a full or unwritable disk:
    an OSError from our own writes, or the text torch/safetensors wrap it in."""
    seen: BaseException | None = exc
    for _ in range(8):  # a short chain; never loop on a cycle
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in WRITE_ERRNOS:
            where = seen.filename or _staging_hint()
            return str(write_error(seen, where, f"while {phase}"))
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    if "No space left on device" in text or "StorageFull" in text or "os error 28" in text:
        return str(write_error(OSError(errno.ENOSPC, text), _staging_hint(), f"while {phase}"))
    return None


def _staging_hint() -> str:
    from kubetune_trainer.modeling.cache import cache_root

    return f"the local staging folder {cache_root() / 'staging'} (KUBETUNE_CACHE)"


def _classify(exc: BaseException, phase: str = "training") -> tuple[int, str]:
    import torch

    if isinstance(exc, TrainerError):
        return exc.exit_code, str(exc)
    disk = _write_failure(exc, phase)
    if disk is not None:
        return ExitCode.STORAGE, disk
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return ExitCode.OOM, (
            f"ran out of memory while training ({exc}); lower training.microBatchSize or "
            "dataset.maxSeqLength, set quantization.mode: 4bit or "
            "training.gradientCheckpointing: on"
        )
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return ExitCode.RETRYABLE, f"transient failure: {type(exc).__name__}: {exc}"
    from kubetune_trainer.distributed import is_distributed, is_peer_loss

    if is_distributed() and is_peer_loss(exc):  # gloo/NCCL: a peer died or went silent
        return ExitCode.RETRYABLE, f"lost a peer: {type(exc).__name__}: {exc}"
    return ExitCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


def _cleanup_partial(p: Progress) -> None:
    """Drop what a failure left half-written in the store (never committed checkpoints)."""
    if p.store is None or p.rank != 0:
        return
    try:
        from kubetune_trainer.storage.checkpoints import CheckpointStore

        ckpts = CheckpointStore(p.store)
        committed = ckpts.list_committed()
        newest = committed[-1].step if committed else -1
        for torn in ckpts.list_torn():
            if torn.step > newest:  # older torn ones may belong to a live retain()
                p.store.delete_prefix(f"checkpoints/{torn.name}/")
        if p.phase == "saving" and not p.store.exists("adapter/adapter.json"):
            p.store.delete_prefix("adapter/")
    except Exception as exc:  # cleanup must never hide the original failure
        log.warning("cleanup after failure incomplete: %s", exc)


def execute(job: FineTuneJob, say: Any = print, **kwargs: Any) -> tuple[int, RunResult | None]:
    """Run `job`; (exit code, result). Never raises for a training failure."""
    p = Progress()
    try:
        result = run_job(job, progress=p, say=say, **kwargs)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        code, message = _classify(exc, p.phase)
        if code == ExitCode.INTERNAL:
            traceback.print_exc(file=sys.stderr)
        _cleanup_partial(p)
        where = f" at step {p.step}" if p.step else ""
        what = "stopped" if code == ExitCode.PREEMPTED else "failed"
        print(
            f"kubetune: {p.phase} {what}{where}: {message} (exit code {code})",
            file=sys.stderr,
            flush=True,
        )
        if p.rank == 0:
            write_summary(
                TerminationSummary(phase=p.phase, message=message, step=p.step, loss=p.loss,
                                   checkpoint=p.checkpoint, exit_code=code)
            )  # fmt: skip
        return code, None
    if p.rank == 0:
        a = result.adapter
        write_summary(
            TerminationSummary(phase="done", message="training finished", step=result.steps,
                               loss=result.final_train_loss, eval_loss=result.tuned_eval_loss,
                               base_eval_loss=result.base_eval_loss,
                               adapter_uri=a.uri if a else None,
                               adapter_sha256=a.sha256 if a else None,
                               adapter_size=a.size if a else None, exit_code=ExitCode.OK)
        )  # fmt: skip
    return ExitCode.OK, result
