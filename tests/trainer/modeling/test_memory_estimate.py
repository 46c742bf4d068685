"""The memory arithmetic (kubetune_api.memory) per rank, for world sizes 1, 2 and 8, with
ZeRO-2/3 sharding and CPU offload; exact bytes, worked out by hand below."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kubetune_api import memory
from kubetune_api.memory import ModelNumbers, decoder_numbers, estimate_bytes
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.modeling.hardware import local_device_index
from tests.support.builders import make_job
from tests.support.trainer.families import FAMILIES

# A 1B-parameter model: 0.8B in the blocks' Linear layers, LoRA r=8 over 1M (in+out) rows.
N = ModelNumbers(params_total=10**9, params_quantizable=8 * 10**8, lora_per_rank=10**6,
                 vocab=32000, hidden=4096, layers=32, heads=32)  # fmt: skip
# bf16 on a GPU: whole weights 2e9 B; LoRA 8e6 params -> weight 32e6, grads 32e6, AdamW 64e6.
# Activations (gc on, seq 512, batch 1): each layer's input 32*512*4096*2 + the layer
#   recomputed 34*512*4096 + 5*32*512² + logits 512*32000*16
#   = 134,217,728 + 71,303,168 + 41,943,040 + 262,144,000.
ACTIVATIONS = 509_607_936
OVERHEAD = 1_610_612_736  # 1.5 GiB


def _spec(tmp_path: Path, ranks: tuple[int, int], stage: str, offload: bool = False) -> Any:
    nodes, per_node = ranks
    dist = {"nodes": nodes, "processesPerNode": per_node, "deepspeed": stage,
            "cpuOffload": offload}  # fmt: skip
    out = "s3://bucket/runs" if nodes > 1 else tmp_path  # multi-node: shared storage
    return make_job(out, adapter={"r": 8}, distributed=dist,  # type: ignore[arg-type]
                    dataset={"maxSeqLength": 512},
                    training={"microBatchSize": 1, "gradientCheckpointing": "on"}).spec  # fmt: skip


@pytest.mark.parametrize(
    ("ranks", "stage", "offload", "weights", "adapter_opt", "offloaded"),
    [
        ((1, 1), "none", False, 2 * 10**9, 128 * 10**6, 0),
        ((1, 1), "zero3", False, 2 * 10**9, 128 * 10**6, 0),  # one rank: nothing to shard
        ((2, 4), "none", False, 2 * 10**9, 128 * 10**6, 0),  # DDP: every rank holds it all
        # ZeRO-2, W=2: grads and AdamW /2 -> 32e6 + 16e6 + 32e6.
        ((1, 2), "zero2", False, 2 * 10**9, 80 * 10**6, 0),
        # ZeRO-3, W=2: weights 2e9/2 + one of 32 blocks gathered (62.5e6); LoRA all /2.
        ((1, 2), "zero3", False, 1_062_500_000, 64 * 10**6, 0),
        ((2, 4), "zero2", False, 2 * 10**9, 44 * 10**6, 0),  # 32e6 + 4e6 + 8e6
        ((2, 4), "zero3", False, 312_500_000, 16 * 10**6, 0),  # 250e6 + 62.5e6; 4+4+8 e6
        # Offload, W=8: ZeRO-2 moves AdamW (8e6) out; ZeRO-3 also the weight shards
        # (250e6) and the LoRA weight shard (4e6): only the gathered block and grads stay.
        ((2, 4), "zero2", True, 2 * 10**9, 36 * 10**6, 8 * 10**6),
        ((8, 1), "zero3", True, 62_500_000, 4 * 10**6, 262 * 10**6),
    ],
)  # fmt: skip
def test_per_rank_bytes(
    tmp_path: Path, ranks: tuple[int, int], stage: str, offload: bool,
    weights: int, adapter_opt: int, offloaded: int,
) -> None:  # fmt: skip
    est = estimate_bytes(_spec(tmp_path, ranks, stage, offload), N, "bf16", 10**12, "cuda", True)
    assert est.weights == weights
    assert est.adapter_and_optimizer == adapter_opt
    assert est.offloaded == offloaded
    assert est.activations == ACTIVATIONS and est.overhead == OVERHEAD
    assert est.total == weights + adapter_opt + ACTIVATIONS + OVERHEAD


def test_a_job_that_fits_only_when_sharded_is_not_refused(tmp_path: Path) -> None:
    available = 3 * 10**9
    est = memory.check(_spec(tmp_path, (2, 4), "zero3"), N, "bf16", available, "cuda")
    assert est.total == 312_500_000 + 16 * 10**6 + ACTIVATIONS + OVERHEAD  # 2.32e9 fits
    assert "per rank (zero3, 8 ranks)" in est.table()
    for stage in ("none", "zero2"):  # the same job unsharded: 4.1e9 and 4.0e9 per rank
        with pytest.raises(memory.DoesNotFit) as err:
            memory.check(_spec(tmp_path, (2, 4), stage), N, "bf16", available, "cuda")
        assert "distributed.deepspeed: zero3" in str(err.value)


def test_ranks_on_one_cpu_host_share_its_memory(tmp_path: Path) -> None:
    one = estimate_bytes(_spec(tmp_path, (1, 1), "none"), N, "fp32", 10**12, "cpu", True)
    two = estimate_bytes(_spec(tmp_path, (1, 2), "zero2"), N, "fp32", 10**12, "cpu", True)
    assert two.ranks_sharing_memory == 2
    per_rank = two.weights + two.adapter_and_optimizer + two.activations + two.overhead
    assert two.total == 2 * per_rank and two.total > one.total
    # On a CPU, offload moves nothing off the "device": host memory holds it either way.
    off = estimate_bytes(_spec(tmp_path, (1, 2), "zero2", True), N, "fp32", 10**12, "cpu", True)
    assert off.total == two.total and off.offloaded == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_config_json_numbers_match_the_exact_count(
    family: str, family_base: Callable[[str], Path]
) -> None:
    """What the operator can compute from config.json equals the trainer's meta-device count."""
    from transformers import AutoConfig

    from kubetune_trainer.modeling.preflight import numbers

    folder = family_base(family)
    for targets in (["all-linear"], ["q_proj", "v_proj"]):
        exact = numbers(AutoConfig.from_pretrained(str(folder)), targets, "causal_lm")
        cfg = json.loads((folder / "config.json").read_text())
        assert decoder_numbers(cfg, targets) == exact


@pytest.mark.parametrize(
    ("env", "count", "index"), [({}, 1, 0), ({"LOCAL_RANK": "3"}, 4, 3)]
)  # fmt: skip
def test_each_rank_reads_its_own_gpu(env: dict[str, str], count: int, index: int) -> None:
    assert local_device_index(env, count) == index


def test_more_ranks_than_gpus_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="local rank 2 needs GPU 2, but 2 CUDA device"):
        local_device_index({"LOCAL_RANK": "2"}, 2)
    with pytest.raises(ConfigError, match="LOCAL_RANK='x'"):
        local_device_index({"LOCAL_RANK": "x"}, 2)


def test_the_check_before_start_gives_the_trainers_message(
    tmp_path: Path, family_base: Callable[[str], Path]
) -> None:
    """From config.json alone (what the operator can read), the same verdict and message as
    the trainer's preflight on the meta-device model."""
    from transformers import AutoConfig

    from kubetune_trainer.errors import OutOfMemoryError
    from kubetune_trainer.modeling.preflight import preflight

    folder = family_base("qwen2")
    cfg = json.loads((folder / "config.json").read_text())
    spec = make_job(tmp_path, training={"precision": "bf16"}).spec
    fits = memory.check_before_start(spec, cfg, 2 * memory.GIB)
    assert fits.total == preflight(spec, AutoConfig.from_pretrained(str(folder)), "bf16",
                                   2 * memory.GIB, "cuda").total  # fmt: skip
    with pytest.raises(memory.DoesNotFit) as api:
        memory.check_before_start(spec, cfg, memory.GIB)  # the 1.5 GiB overhead alone
    with pytest.raises(OutOfMemoryError) as trainer:
        preflight(spec, AutoConfig.from_pretrained(str(folder)), "bf16", memory.GIB, "cuda")
    assert str(api.value) == str(trainer.value)
    assert "does not fit in memory" in str(api.value)


def test_the_bytes_each_technique_saves(tmp_path: Path) -> None:
    """memory.savings against the hand-worked numbers above (the report's memory.savings)."""
    spec = make_job(tmp_path, adapter={"r": 8}, quantization={"mode": "4bit"},
                    dataset={"maxSeqLength": 512},
                    training={"microBatchSize": 1, "gradientCheckpointing": "on"}).spec  # fmt: skip
    saved = memory.savings(spec, N, "bf16", "cuda", gradient_checkpointing=True)
    packed = int(8 * 10**8 * (0.5 + 1 / 64 + 4 / (64 * 256)) + 2 * 10**8 * 2)
    assert saved["quantization_4bit"] == 2 * 10**9 - packed
    # Without checkpointing all 32 layers keep 34·s·b·h bytes; with it, one hidden state
    # per layer plus the layer being recomputed.
    assert saved["gradient_checkpointing"] == 31 * 34 * 512 * 4096 - 32 * 512 * 4096 * 2
    # Full fine-tune: fp32 grads + AdamW for 1e9 params; LoRA: 8e6 params x 16 bytes.
    assert saved["lora"] == 10**9 * 12 - 8 * 10**6 * 16
    assert set(memory.savings(spec, N, "bf16", "cuda", False)) == {"quantization_4bit", "lora"}
