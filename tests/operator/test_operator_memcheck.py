"""The operator's memory preflight, before any Job: the real operator over HTTP against the
emulator reads the base's config.json (a local folder under --model-config-root, or S3 on
a real moto server) and refuses a job that cannot fit with the trainer's own message
(Failed, reason OutOfMemory, no Job, no ConfigMap); one that fits, or whose config.json is
not reachable or too big, gets its Job as before (the trainer checks it again)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubetune_api.loader import parse_spec
from kubetune_operator import memcheck
from kubetune_operator.config import OperatorConfig
from tests.support.kube.cluster import FTJ, EmulatorServer, run_operator, wait_for
from tests.support.kube.operator import NS, cond, load_ftj, reconciles, status
from tests.support.servers.servers import S3Server, s3_server

JOBS = "batch/v1/jobs"
LLAMA_7B = {"architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
            "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 32, "vocab_size": 32000}  # fmt: skip
LLAMA_13B = {**LLAMA_7B, "hidden_size": 5120, "intermediate_size": 13824,
             "num_hidden_layers": 40, "num_attention_heads": 40,
             "num_key_value_heads": 40}  # fmt: skip
CPU_POD = {"gpusPerNode": 0, "gpuType": None, "memory": "12Gi"}
ONE_PROCESS = {"nodes": 1, "processesPerNode": 1}


def named(name: str, **spec: Any) -> dict[str, Any]:
    doc = load_ftj(**spec)
    doc["metadata"]["name"] = name
    return doc


def write_model(root: Path, name: str, config: dict[str, Any]) -> Path:
    (root / name).mkdir(parents=True)
    (root / name / "config.json").write_text(json.dumps(config))
    return root / name


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    with s3_server(tmp_path / "moto") as server:
        client = server.client()
        client.create_bucket(Bucket="models")
        client.put_object(Bucket="models", Key="llama-13b/config.json",
                          Body=json.dumps(LLAMA_13B).encode())  # fmt: skip
        for k, v in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                     "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                     "AWS_CONFIG_FILE": str(tmp_path / "none")}.items():  # fmt: skip
            monkeypatch.setenv(k, v)
        yield server


@pytest.fixture
def models(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def op(cluster: EmulatorServer, s3: S3Server, models: Path) -> Iterator[EmulatorServer]:
    """The operator with a model root and the moto server on its --s3-endpoint-allow list."""
    models.mkdir()
    config = OperatorConfig(reconcile_interval=0.5, status_interval=0.5, metrics_port=None,
                            s3_endpoint_allow=(s3.endpoint,),
                            model_config_roots=(str(models),))  # fmt: skip
    with run_operator(cluster, [NS], config):
        yield cluster


def trainer_message(doc: dict[str, Any], config: dict[str, Any], available: int,
                    device: str) -> str:  # fmt: skip
    """What the trainer's own preflight says (exact parameter counts on the meta device)."""
    from transformers import LlamaConfig

    from kubetune_trainer.errors import OutOfMemoryError
    from kubetune_trainer.modeling.preflight import preflight

    spec = parse_spec(doc["spec"], "x", NS).spec
    with pytest.raises(OutOfMemoryError) as exc:
        preflight(spec, LlamaConfig(**config), "bf16", available, device)
    return str(exc.value)


def test_a_job_that_cannot_fit_is_refused_before_any_job(op, models, s3) -> None:
    cluster = op
    base = write_model(models, "llama-7b", LLAMA_7B)
    doc = load_ftj(model={"base": str(base)}, resources=CPU_POD, distributed=ONE_PROCESS)
    cluster.create(FTJ, doc)
    st = wait_for(lambda: (s := status(cluster)).get("phase") == "Failed" and s, what="Failed")
    c = cond(st, "Failed")
    assert c["reason"] == "OutOfMemory"
    expected = trainer_message(doc, LLAMA_7B, 12 * 1024**3, "cpu")
    assert c["message"] == f"out of memory (operator preflight, no pod started): {expected}"
    assert "Recommendations: load the base in 4-bit" in c["message"]
    assert cluster.get(JOBS, NS, "llama-lora-a1") is None
    assert cluster.get("v1/configmaps", NS, "llama-lora-spec") is None

    # On S3: a 13B in bf16 on one 24 GB GPU cannot fit; in 4-bit on 80 GB it does.
    gpu24 = {"gpusPerNode": 1, "gpuType": "NVIDIA-L4-24GB"}
    s3_base = {"base": "s3://models/llama-13b"}
    out = {"s3Endpoint": s3.endpoint}
    big = named("big", model=s3_base, resources=gpu24, output=out, distributed=ONE_PROCESS,
                   training={"precision": "bf16"})  # fmt: skip
    cluster.create(FTJ, big)
    st = wait_for(lambda: (s := status(cluster, "big")).get("phase") == "Failed" and s,
                  what="Failed")  # fmt: skip
    expected = trainer_message(big, LLAMA_13B, 24 * 1024**3, "cuda")
    assert cond(st, "Failed")["message"].endswith(expected)
    fits = named("fits", model=s3_base, output=out, quantization={"mode": "4bit"})
    cluster.create(FTJ, fits)
    wait_for(lambda: cluster.get(JOBS, NS, "fits-a1"), what="the Job of a job that fits")


def test_config_json_is_read_once_per_generation(op, models) -> None:
    """A job that stays unaccepted (here: suspended from the start) is reconciled every
    interval; its config.json is read for its generation, not again at each reconcile."""
    cluster = op
    tiny = {**LLAMA_7B, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 1000}  # fmt: skip
    base = write_model(models, "m", tiny)
    doc = named("held", model={"base": str(base)}, resources=CPU_POD, distributed=ONE_PROCESS,
                runPolicy={"suspend": True})  # fmt: skip
    cluster.create(FTJ, doc)
    wait_for(lambda: status(cluster, "held").get("phase") == "Suspended", what="Suspended")
    (base / "config.json").write_text(json.dumps(LLAMA_7B))  # would not fit: unread for now
    done = reconciles(cluster)
    wait_for(lambda: reconciles(cluster) >= done + 4, what="four more reconciles")
    assert status(cluster, "held")["phase"] == "Suspended"
    # Resuming is a spec edit (a new generation): checked again, and now refused.
    cluster.patch(FTJ, NS, "held", {"spec": {"runPolicy": {"suspend": False}}})
    st = wait_for(lambda: (s := status(cluster, "held")).get("phase") == "Failed" and s,
                  what="Failed")  # fmt: skip
    assert cond(st, "Failed")["reason"] == "OutOfMemory"
    assert cluster.get(JOBS, NS, "held-a1") is None


def test_unreachable_configs_leave_the_check_to_the_trainer(op, models, tmp_path) -> None:
    cluster = op
    outside = write_model(tmp_path / "elsewhere", "llama-7b", LLAMA_7B)  # not under the root
    cluster.create(FTJ, named("outside", model={"base": str(outside)},
                                 resources=CPU_POD, distributed=ONE_PROCESS))  # fmt: skip
    wait_for(lambda: cluster.get(JOBS, NS, "outside-a1"), what="the Job (config not read)")
    huge = write_model(models, "huge", {**LLAMA_7B, "pad": "x" * memcheck.MAX_CONFIG_BYTES})
    cluster.create(FTJ, named("huge", model={"base": str(huge)},
                                 resources=CPU_POD, distributed=ONE_PROCESS))  # fmt: skip
    wait_for(lambda: cluster.get(JOBS, NS, "huge-a1"), what="the Job (config too big)")


def test_read_config_bounds_and_sources(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ok = write_model(root, "m", LLAMA_7B)
    job = parse_spec(load_ftj(model={"base": str(ok)})["spec"], "x", NS)
    assert memcheck.read_config(job, (str(root),), ()) == LLAMA_7B
    with pytest.raises(memcheck.NotReadable, match="not under an --model-config-root"):
        memcheck.read_config(job, (str(tmp_path / "other"),), ())
    (ok / "config.json").write_text(" " * (memcheck.MAX_CONFIG_BYTES + 1))
    with pytest.raises(memcheck.NotReadable, match="over 1048576 bytes"):
        memcheck.read_config(job, (str(root),), ())
    # A symlink out of the root is judged by where it points.
    (root / "link").mkdir()
    (root / "link" / "config.json").symlink_to(tmp_path / "secret.json")
    (tmp_path / "secret.json").write_text("{}")
    linked = parse_spec(load_ftj(model={"base": str(root / "link")})["spec"], "x", NS)
    with pytest.raises(memcheck.NotReadable, match="not under"):
        memcheck.read_config(linked, (str(root),), ())
    hub = parse_spec(load_ftj(model={"base": "meta-llama/Llama-2-7b-hf"})["spec"], "x", NS)
    with pytest.raises(memcheck.NotReadable, match="read by the trainer only"):
        memcheck.read_config(hub, (str(root),), ())
    s3_other = parse_spec(load_ftj(model={"base": "s3://models/m"})["spec"], "x", NS)
    with pytest.raises(memcheck.NotReadable, match="not in --s3-endpoint-allow"):
        memcheck.read_config(s3_other, (), ())  # ftj-basic's s3Endpoint is not allowed
    gib = 1024**3
    for gpu_type, size in [
        ("NVIDIA-A100-SXM4-80GB", 80 * gib),
        ("NVIDIA-H100-80GB-HBM3", 80 * gib),
        ("NVIDIA-L4-24GB", 24 * gib),
        ("Tesla-T4", None),
        ("NVIDIA-A10G", None),
    ]:
        gpu = parse_spec(named("g", resources={"gpuType": gpu_type})["spec"], "g", NS)
        assert memcheck.device_memory(gpu) == (("cuda", size) if size else None), gpu_type
    assert memcheck.quantity_bytes("16Gi") == 16 * 1024**3
    assert memcheck.quantity_bytes("500M") == 500 * 10**6


def test_an_oversized_config_on_s3_is_not_read(s3) -> None:
    huge = json.dumps({**LLAMA_7B, "pad": "x" * memcheck.MAX_CONFIG_BYTES}).encode()
    s3.client().put_object(Bucket="models", Key="huge/config.json", Body=huge)
    out = {"s3Endpoint": s3.endpoint}

    def job(base: str) -> Any:
        return parse_spec(named("h", model={"base": base}, output=out)["spec"], "h", NS)

    assert memcheck.read_config(job("s3://models/llama-13b"), (), (s3.endpoint,)) == LLAMA_13B
    with pytest.raises(memcheck.NotReadable, match="over 1048576 bytes"):
        memcheck.read_config(job("s3://models/huge"), (), (s3.endpoint,))


def test_a_silent_s3_endpoint_is_given_up_after_the_timeout(monkeypatch) -> None:
    """An allowed endpoint that accepts the connection and never answers."""
    import asyncio
    import socket
    import time

    for k, v in {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        doc = named("slow", model={"base": "s3://models/m"}, output={"s3Endpoint": endpoint},
                    resources={"gpusPerNode": 1}, distributed=ONE_PROCESS)  # fmt: skip
        job = parse_spec(doc["spec"], "slow", NS)

        async def timed() -> tuple[str | None, float]:
            t0 = time.monotonic()
            got = await memcheck.refusal(job, (), (endpoint,), logging.getLogger("t"), 0.3)
            return got, time.monotonic() - t0

        got, seconds = asyncio.run(timed())
    assert got is None and seconds < 2
