"""examples/notebooks/medical_qlora.ipynb runs top to bottom on the CPU with the tiny model.

The notebook is executed once per module by a real Jupyter kernel (nbclient), with the
parameters injected after its `parameters` cell (as papermill does) and its `install`
cell dropped; the adapter upload goes to a real moto S3 server. Each test then reads the
outputs of one cell.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.support.kube.cluster import FTJ, EmulatorServer
from tests.support.servers.servers import S3Server, s3_server

pytestmark = [pytest.mark.slow, pytest.mark.services]  # a Jupyter kernel and moto S3

ROOT = Path(__file__).resolve().parents[3]
NOTEBOOK = ROOT / "examples" / "notebooks" / "medical_qlora.ipynb"
DATA = ROOT / "examples" / "data" / "medical_qa" / "train.jsonl"
BUCKET = "notebook-artifacts"
CLUSTER_NS = "notebook-cluster"
CELL_TIMEOUT = 240  # seconds per cell; generous because the test machine's cores are shared
PARAMS: dict[str, Any] = {
    "BASE_MODEL": "builtin:tiny-llama",
    "QUANTIZATION": "4bit",  # the real QLoRA path: bitsandbytes NF4 also runs on a CPU
    "MAX_STEPS": 6,
    "MICRO_BATCH_SIZE": 4,
    "GRADIENT_ACCUMULATION": 1,
    "MAX_SEQ_LENGTH": 128,
    "LORA_R": 8,
    "LEARNING_RATE": 0.02,
    "LOGGING_STEPS": 1,
    "EVAL_STEPS": 3,
    "TEST_QUESTIONS": 2,
    "MAX_NEW_TOKENS": 12,
}


def inject_parameters(nb: Any, params: dict[str, Any]) -> None:
    """A cell of `NAME = value` lines right after the `parameters` cell (papermill's way)."""
    idx = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = "# Parameters (injected by the test)\n" + "".join(
        f"{k} = {v!r}\n" for k, v in params.items()
    )
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(idx + 1, cell)


def outputs_text(cell: Any) -> str:
    """Stream text plus the text/plain of every display/result output of one cell."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("display_data", "execute_result"):
            parts.append(out.data.get("text/plain", ""))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    output = tmp_path_factory.mktemp("notebook-runs")
    nb.cells = [c for c in nb.cells if "install" not in c.metadata.get("tags", [])]
    with (
        s3_server(tmp_path_factory.mktemp("moto")) as s3,
        EmulatorServer(tmp_path_factory.mktemp("cluster")) as cluster,
        pytest.MonkeyPatch.context() as mp,  # the kernel inherits this environment
    ):
        s3.client().create_bucket(Bucket=BUCKET)
        cluster.apply_crd()
        cluster.create_namespace(CLUSTER_NS)
        inject_parameters(
            nb,
            {
                **PARAMS,
                "OUTPUT_DIR": str(output),
                "S3_URI": f"s3://{BUCKET}/kubetune",
                "S3_ENDPOINT": s3.endpoint,
                "CLUSTER_KUBECONFIG": str(cluster.kubeconfig),
                "CLUSTER_NAMESPACE": CLUSTER_NS,
                "CLUSTER_DATA": "s3://notebook-data/medical_qa/train.jsonl",
            },
        )
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            mp.setenv(key, "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("KUBETUNE_CACHE", str(tmp_path_factory.mktemp("kubetune-cache")))
        mp.setenv("CUDA_VISIBLE_DEVICES", "")  # the CPU path, also on a machine with a GPU
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.delenv("KUBETUNE_OUTPUT_URI", raising=False)
        # The kernel starts in the notebook's folder, so the default DATA path is exercised.
        client = NotebookClient(
            nb,
            timeout=CELL_TIMEOUT,
            kernel_name="python3",
            resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        )
        client.execute()
        cells = {t: c for c in nb.cells for t in c.metadata.get("tags", [])}
        run_dir = output / "notebook" / "medical-qa"
        ftj = cluster.get(FTJ, CLUSTER_NS, "medical-qa")
        yield {"cells": cells, "run_dir": run_dir, "s3": s3, "ftj": ftj}


def test_committed_notebook_has_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    tags = {t for c in code for t in c.metadata.get("tags", [])}
    assert {"parameters", "install"} <= tags


def test_kernel_runs_this_virtualenv(run: dict[str, Any]) -> None:
    # The environment cell's library versions come from the interpreter that ran it.
    from importlib.metadata import version

    text = outputs_text(run["cells"]["environment"])
    assert re.search(rf"transformers\s+{re.escape(version('transformers'))}", text)


def test_environment_cell_warns_that_cpu_training_is_slow(run: dict[str, Any]) -> None:
    text = outputs_text(run["cells"]["environment"])
    assert "No GPU" in text and "slow" in text
    assert re.search(r"\d+\.\d of \d+\.\d GiB RAM free", text)


def test_dataset_cell_shows_counts_and_a_formatted_example(run: dict[str, Any]) -> None:
    text = outputs_text(run["cells"]["dataset"])
    rows = sum(1 for line in DATA.read_text().splitlines() if line.strip())
    m = re.search(r"rows read (\d+), kept (\d+), skipped (\d+)", text)
    assert m, text
    read, kept, skipped = map(int, m.groups())
    assert (read, kept + skipped) == (rows, rows)
    split = re.search(r"split: (\d+) train / (\d+) validation", text)
    assert split and int(split[1]) + int(split[2]) == kept and int(split[2]) > 0
    # The example is rendered by the tiny model's chat template with the system prompt.
    assert "<|im_start|>system\nYou are a careful medical assistant" in text
    assert "<|im_start|>assistant\n" in text


def test_model_cell_loads_the_base_in_4bit_and_counts_the_trained_parameters(
    run: dict[str, Any],
) -> None:
    text = outputs_text(run["cells"]["model"])
    assert re.search(r"^quantization:\s+4bit \(nf4, double quantization on\)$", text, re.M)
    layers = re.search(r"^quantized Linear layers:\s+(\d+) 4-bit, (\d+) 8-bit", text, re.M)
    assert layers and int(layers[1]) > 0 and int(layers[2]) == 0, text
    m = re.search(r"^trainable parameters:\s+([\d,]+) of ([\d,]+)", text, re.M)
    assert m, text
    report = json.loads((run["run_dir"] / "report" / "report.json").read_text())
    assert report["hyperparameters"]["quantization"] == "4bit"
    assert int(m[1].replace(",", "")) == report["parameters"]["trainable"]
    assert int(m[2].replace(",", "")) == report["parameters"]["total"]
    assert "memory preflight:" in text and "available" in text
    assert re.search(r"^memory in use:\s+process RSS \d+\.\d\d GiB after the load", text, re.M)
    assert re.search(r"^model: builtin:tiny-llama ", text, re.M)  # load_all's own load line


def test_training_cell_trains_the_model_cell_model_without_loading_again(
    run: dict[str, Any],
) -> None:
    text = outputs_text(run["cells"]["training"])
    assert re.search(r"^kubetune: notebook/medical-qa, objective sft", text, re.M)  # run_job ran
    # load_all's lines (the system, the data, the preflight, the load) belong to the model cell.
    for start in ("model: ", "memory preflight: ", "system: ", "data: "):
        assert not re.search(rf"^{start}", text, re.M), start


def test_training_cell_shows_progress_and_a_loss_plot(run: dict[str, Any]) -> None:
    cell = run["cells"]["training"]
    text = outputs_text(cell)
    steps = PARAMS["MAX_STEPS"]
    assert f"step {steps}/{steps}" in text  # the bar's final state
    # The bar and plot were redrawn while the run went on, not only at the end.
    live = re.search(r"^live view: (\d+) updates followed from the run's /metrics", text, re.M)
    assert live and int(live[1]) > 0, text
    pngs = [
        base64.b64decode(o.data["image/png"])
        for o in cell.outputs
        if o.output_type == "display_data" and "image/png" in o.data
    ]
    assert pngs and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    rows = (run["run_dir"] / "report" / "metrics.jsonl").read_text().splitlines()
    assert sum(1 for r in rows if '"loss"' in r) == steps  # loggingSteps 1: one row per step


def test_save_cell_lists_the_adapter_with_its_real_sha256(run: dict[str, Any]) -> None:
    text = outputs_text(run["cells"]["save"])
    weights = run["run_dir"] / "adapter" / "adapter_model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    line = next(ln for ln in text.splitlines() if ln.startswith("adapter_model.safetensors"))
    assert digest in line and f"{weights.stat().st_size:,}" in line
    assert "weights sha256 matches adapter.json" in text


def test_save_cell_uploads_the_adapter_to_s3_in_the_run_layout(run: dict[str, Any]) -> None:
    text = outputs_text(run["cells"]["save"])
    prefix = "kubetune/notebook/medical-qa/adapter/"
    assert f"uploaded to s3://{BUCKET}/{prefix.rstrip('/')}" in text
    s3: S3Server = run["s3"]
    client = s3.client()
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    remote = {o["Key"].removeprefix(prefix): o["Size"] for o in listed}
    local = {p.name: p.stat().st_size for p in (run["run_dir"] / "adapter").iterdir()}
    assert remote.keys() == local.keys() and "adapter_model.safetensors" in remote
    # adapter.json is rewritten by the upload; every other file is byte-identical.
    assert {k: v for k, v in remote.items() if k != "adapter.json"} == {
        k: v for k, v in local.items() if k != "adapter.json"
    }
    body = client.get_object(Bucket=BUCKET, Key=prefix + "adapter_model.safetensors")["Body"]
    weights = run["run_dir"] / "adapter" / "adapter_model.safetensors"
    assert hashlib.sha256(body.read()).digest() == hashlib.sha256(weights.read_bytes()).digest()
    record = json.loads(
        client.get_object(Bucket=BUCKET, Key=prefix + "adapter.json")["Body"].read()
    )
    assert record["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_compare_cell_shows_base_and_tuned_answers_with_generation_settings(
    run: dict[str, Any],
) -> None:
    text = outputs_text(run["cells"]["compare"])
    gen = re.search(r"generation parameters: (.*)", text)
    assert gen, text
    assert f"max_new_tokens={PARAMS['MAX_NEW_TOKENS']}" in gen[1]
    assert "temperature=0.0" in gen[1] and "decoding=greedy" in gen[1]
    questions = re.findall(r"^Q\d+: (.*)$", text, flags=re.M)
    assert len(questions) == PARAMS["TEST_QUESTIONS"]
    known = {json.loads(line)["question"] for line in DATA.read_text().splitlines() if line}
    assert set(questions) <= known
    assert text.count("base answer:") == text.count("tuned answer:") == len(questions)


def test_job_cell_prints_a_runnable_job_whose_held_out_split_is_what_compare_shows(
    run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from kubetune_api.loader import parse_job
    from kubetune_trainer.data import prepare

    job = parse_job(yaml.safe_load(outputs_text(run["cells"]["job"])), "job cell")
    assert job.spec.model.base == PARAMS["BASE_MODEL"]
    assert job.spec.training.max_steps == PARAMS["MAX_STEPS"]
    monkeypatch.chdir(NOTEBOOK.parent)  # DATA is relative to the notebook, as in the kernel
    prepared = prepare(job)
    text = outputs_text(run["cells"]["compare"])
    questions = re.findall(r"^Q\d+: (.*)$", text, flags=re.M)
    held_out = [r["prompt"] for r in prepared.validation]
    assert questions == held_out[: PARAMS["TEST_QUESTIONS"]]
    assert not set(questions) & {r["prompt"] for r in prepared.train}


def test_cluster_cell_submits_the_job_through_the_client(run: dict[str, Any]) -> None:
    text = outputs_text(run["cells"]["cluster"])
    assert f"submitted {CLUSTER_NS}/medical-qa: Pending" in text
    ftj = run["ftj"]
    assert ftj is not None, "the FineTuneJob was not created in the API"
    spec = ftj["spec"]
    assert spec["dataset"]["source"] == "s3://notebook-data/medical_qa/train.jsonl"
    assert spec["output"]["uri"] == f"s3://{BUCKET}/kubetune"
    assert spec["training"]["maxSteps"] == PARAMS["MAX_STEPS"]
