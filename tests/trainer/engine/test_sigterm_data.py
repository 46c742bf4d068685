"""SIGTERM while a real `kubetune train` prepares or tokenizes its data: it stops within
seconds with the preemption exit code (76) and commits nothing (no data-cache entry, no
checkpoint). Before, the handler waited for a training step that never came."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from kubetune_api.constants import ExitCode
from tests.support.builders import BASE_SPEC, write_qa_jsonl

KUBETUNE = str(Path(sys.executable).with_name("kubetune"))


def _start(tmp: Path, rows: int, **sections: dict) -> subprocess.Popen[str]:
    spec = json.loads(json.dumps(BASE_SPEC))
    for key, values in sections.items():
        spec[key] = {**spec.get(key, {}), **values}
    spec["dataset"]["source"] = str(write_qa_jsonl(tmp / "data.jsonl", rows))
    spec["output"] = {"uri": str(tmp / "out")}
    doc = {"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob",
           "metadata": {"name": "sig", "namespace": "test"}, "spec": spec}  # fmt: skip
    (tmp / "job.yaml").write_text(yaml.safe_dump(doc))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "KUBETUNE_PROGRESS_SECONDS": "0.5"}
    cmd = [KUBETUNE, "train", "--spec", str(tmp / "job.yaml")]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _stop_when(proc: subprocess.Popen[str], marker: str) -> tuple[float, list[str]]:
    """Send SIGTERM at the first line holding `marker`; (seconds to exit, output)."""
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            break
    else:
        pytest.fail(f"never saw {marker!r}:\n" + "".join(lines[-30:]))
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    return time.monotonic() - sent, lines


@pytest.mark.slow  # a real `kubetune train` on a data set big enough to be caught mid-work
@pytest.mark.parametrize(
    ("rows", "marker", "phase"),
    [
        (120_000, "prepare: ", "data preparation"),  # a progress line: mid-read
        (30_000, "data: tokenizing", "tokenization"),  # two tokenizer workers starting
    ],
)
def test_sigterm_during_data_work_stops_at_once_with_76(
    tmp_path: Path, rows: int, marker: str, phase: str, trainer_env: None
) -> None:
    proc = _start(tmp_path, rows)
    took, lines = _stop_when(proc, marker)
    out = "".join(lines[-40:])
    assert proc.returncode == ExitCode.PREEMPTED == 76, out
    summary = json.loads((tmp_path / "termination-log").read_text())
    assert summary["exit_code"] == 76, summary
    assert took < 10, f"{took:.1f}s to stop\n{out}"
    assert f"SIGTERM during {phase}" in out
    run = tmp_path / "out" / "test" / "sig"
    assert not list(run.glob("data-cache/*/MANIFEST.json"))  # nothing committed
    assert not (run / "checkpoints").exists() and not (run / "adapter").exists()
    # Nothing half-built left in the local cache either (a temporary folder is removed).
    cache = Path(os.environ["KUBETUNE_CACHE"]) / "data"
    assert not cache.exists() or not [p for p in cache.iterdir() if p.name.startswith(".")]


@pytest.mark.slow  # a validation split large enough that its evaluation takes a while
def test_sigterm_during_the_evaluation_after_training_stops_at_once_with_76(
    tmp_path: Path, trainer_env: None
) -> None:
    # 2 steps, then the base and tuned evaluation over ~8k validation examples.
    proc = _start(tmp_path, 16_000, training={"maxSteps": 2, "saveSteps": 2},
                  dataset={"validation": {"fraction": 0.5}})  # fmt: skip
    took, lines = _stop_when(proc, "evaluating the base (adapter disabled)")
    out = "".join(lines[-40:])
    assert proc.returncode == ExitCode.PREEMPTED == 76, out
    assert took < 10, f"{took:.1f}s to stop\n{out}"
    assert "SIGTERM during the evaluation after training" in out
    run = tmp_path / "out" / "test" / "sig"
    assert (run / "checkpoints" / "step-000002" / "MANIFEST.json").is_file()  # kept
    assert not (run / "adapter").exists()


_EXITER = """
import atexit, logging, sys
from kubetune_trainer.distributed import exit_rank
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
atexit.register(lambda: print("teardown ran", flush=True))
print("buffered line")  # no flush: exit_rank must not lose it
logging.getLogger("t").info("logged line")
exit_rank(int(sys.argv[1]))
"""


@pytest.mark.parametrize(("code", "teardown"), [(ExitCode.PREEMPTED, False), (3, True)])
def test_a_preempted_single_process_skips_the_slow_teardown(code: int, teardown: bool) -> None:
    env = {**os.environ, "WORLD_SIZE": "1"}
    out = subprocess.run([sys.executable, "-c", _EXITER, str(code)], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == code
    assert "buffered line" in out.stdout and "logged line" in out.stderr
    assert ("teardown ran" in out.stdout) is teardown
