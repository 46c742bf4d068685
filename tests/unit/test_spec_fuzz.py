"""Malformed FineTuneJob files through the real `kubetune validate` (issue 18's bound).

Every case of the seeded corpus (tests/support/fuzz/specs.py, several hundred files across
types, ranges, encodings, nesting, aliases, sizes, duplicate and unknown keys, names,
documents and tags) must: finish within 5 s (a per-case deadline, enforced with a timer
signal so a hang fails the case instead of the suite), exit 0 or 1, print less than 4 KB,
and never a traceback. Cases known to be invalid must exit 1, known-valid ones 0.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import pytest
from click.testing import CliRunner

from kubetune_trainer.commands.validate import command as validate_command
from tests.support.fuzz.specs import Case, corpus

DEADLINE_S = 5.0
MAX_OUTPUT = 4096
CASES = corpus()
BY_ID = {c.id: c for c in CASES}


class DeadlineExceeded(Exception):
    pass


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise DeadlineExceeded(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)  # pytest-timeout's, if any
    start = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer:  # give the outer timer back what is left of it
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 0.01))


def test_the_deadline_interrupts_a_hang() -> None:
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded), deadline(0.2):
        while True:  # a pure-Python hang, like a YAML bomb being expanded
            pass
    assert time.monotonic() - start < 2


def _write(case: Case, folder: Path) -> Path:
    path = folder / f"job{case.suffix}"
    path.write_bytes(case.make())
    return path


def test_the_corpus_is_large_and_varied() -> None:
    assert len(CASES) >= 600, len(CASES)
    families = {c.id.split("-")[0] for c in CASES}
    expected = {"type", "number", "hugeint", "enc", "deep", "bomb", "alias", "size",
                "dup", "unknown", "snake", "newline", "namespace", "name", "labels",
                "ports", "quantity", "empty", "multi", "root", "syntax", "json", "tag",
                "mutate"}  # fmt: skip
    assert expected <= families, expected - families
    # Deterministic: the same seed gives the same files.
    again = {c.id: c for c in corpus()}
    for case_id in ("bomb-metadata-9x9", "mutate-quickstart-3", "enc-finance-qa-invalid-utf8"):
        assert again[case_id].make() == BY_ID[case_id].make()


@pytest.mark.parametrize("case_id", list(BY_ID))
def test_validate_is_bounded(case_id: str, tmp_path: Path) -> None:
    case = BY_ID[case_id]
    path = _write(case, tmp_path)
    runner = CliRunner()
    start = time.monotonic()
    with deadline(DEADLINE_S):
        # catch_exceptions=False: any exception but the command's own exit fails the case.
        result = runner.invoke(validate_command, [str(path)], catch_exceptions=False)
    elapsed = time.monotonic() - start
    output = result.output
    assert elapsed < DEADLINE_S, elapsed
    assert result.exit_code in (0, 1), (result.exit_code, output[-500:])
    assert len(output.encode()) < MAX_OUTPUT, (len(output), output[:500])
    assert "Traceback" not in output, output[-1500:]
    if case.invalid is True:
        assert result.exit_code == 1, f"accepted: {output[:500]}"
        assert f"{path}: " in result.stderr
    elif case.invalid is False:
        assert result.exit_code == 0, output[:1000]


NASTIEST = ["bomb-metadata-9x9", "bomb-labels-64x2", "alias-big-string-x1000",
            "alias-recursive-self", "deep-flow-list-status-400000", "deep-json-list",
            "size-8mb-list", "size-key-1.9mb", "enc-quickstart-invalid-utf8",
            "enc-quickstart-utf16", "tag-5", "multi-10k-docs"]  # fmt: skip


# The validating process may map at most this much memory: a bomb expanded or a huge file
# read whole would end it with a MemoryError (a traceback), failing the test. (An in-process
# peak would measure whatever ran before in the same pytest process.)
MEMORY_CAP = 1 << 30


def _memory_cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def test_the_nastiest_through_a_real_process(tmp_path: Path) -> None:
    files = []
    for i, case_id in enumerate(NASTIEST):
        case = BY_ID[case_id]
        folder = tmp_path / f"c{i}"
        folder.mkdir()
        files.append(str(_write(case, folder)))
    proc = subprocess.run(
        [sys.executable, "-m", "kubetune_trainer.cli", "validate", *files],
        capture_output=True, text=True, timeout=60, preexec_fn=_memory_cap,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    assert len(out.encode()) < MAX_OUTPUT * len(files)
    for f in files:
        assert f"{f}: " in proc.stderr, f
    assert f"{len(files)} of {len(files)} file(s) invalid" in proc.stderr
