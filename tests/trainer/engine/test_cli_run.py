"""`kubetune run JOB.yaml --set ... --output DIR`: the real command, end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.builders import BASE_SPEC, write_qa_jsonl

KUBETUNE = str(Path(sys.executable).with_name("kubetune"))


def test_kubetune_run_applies_overrides_and_prints_where_the_results_are(tmp_path: Path) -> None:
    spec = json.loads(json.dumps(BASE_SPEC))  # maxSteps 20 in the file
    spec["dataset"]["source"] = str(write_qa_jsonl(tmp_path / "data.jsonl", 40))
    spec["dataset"]["validation"] = {"fraction": 0.25}
    spec["output"] = {"uri": str(tmp_path / "spec-output")}  # --output wins over this
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump({
        "apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob",
        "metadata": {"name": "cli", "namespace": "test"}, "spec": spec,
    }))  # fmt: skip
    out = tmp_path / "runs"
    proc = subprocess.run(
        [KUBETUNE, "run", str(job_file), "--set", "training.maxSteps=4", "--output", str(out)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = out / "test" / "cli"
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert report["results"]["steps"] == 4 and report["hyperparameters"]["max_steps"] == 4
    assert "maxSteps: 4" in proc.stdout  # the resolved spec it logs at start
    # glibc's malloc unless KUBETUNE_ALLOCATOR=jemalloc (allocator.py).
    assert "malloc system;" in proc.stdout
    assert not (tmp_path / "spec-output").exists()
    res = report["results"]
    tail = proc.stdout.rstrip().splitlines()[-3:]
    assert tail == [
        f"adapter: {run_dir / 'adapter'}",
        f"report:  {run_dir / 'report'}/report.md",
        f"eval loss: base {res['base_eval_loss']:.4f} -> tuned {res['tuned_eval_loss']:.4f}",
    ]
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert re.search(r"^checkpoint step 4 committed to ", proc.stderr, re.M)  # not a tty
