"""Each model family trains with LoRA and on a 4-bit base, and resumes exactly.

Families: Llama, Mistral, Qwen2 (the DeepSeek-R1 distill architecture) and Gemma, tiny
random-weight models built offline (kubetune_trainer.modeling.families).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.builders import train_losses
from tests.support.trainer.families import CHAT_MARKERS, FAMILIES, train

ARCH = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
        "qwen2": "Qwen2ForCausalLM", "gemma": "GemmaForCausalLM"}  # fmt: skip


@pytest.mark.parametrize("family", FAMILIES)
def test_family_lora_training_lowers_the_loss(
    family: str, family_trained: Callable[[str], dict[str, Any]]
) -> None:
    run = family_trained(family)
    cfg = json.loads((run["base"] / "config.json").read_text())
    assert cfg["architectures"] == [ARCH[family]]
    losses = train_losses(Path(run["result"].run_uri))
    assert sorted(losses) == list(range(1, 9))
    assert losses[7] + losses[8] < 0.95 * (losses[1] + losses[2]), losses  # it learns
    adapter_cfg = json.loads((run["adapter"] / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(run["base"])
    leaves = {t.rsplit(".", 1)[-1] for t in adapter_cfg["target_modules"]}
    assert {"q_proj", "v_proj", "down_proj"} <= leaves


@pytest.mark.parametrize("family", FAMILIES)
def test_family_chat_template_shapes_the_training_text(
    family: str, family_base: Callable[[str], Path]
) -> None:
    from transformers import AutoTokenizer

    from kubetune_api.spec_data import DatasetSpec
    from kubetune_trainer.data.tokenize import tokenize_sft

    tok = AutoTokenizer.from_pretrained(str(family_base(family)))
    ds = DatasetSpec(source="x.jsonl", format="qa", maxSeqLength=128)
    rec = {"prompt": "What color is the cup? It is red.", "completion": "The cup is red."}
    (ids,) = tokenize_sft([rec], tok, ds).input_ids
    text = tok.decode(ids)
    user, assistant = CHAT_MARKERS[family]
    assert text.startswith(user + rec["prompt"]), text  # the family's own layout
    assert assistant + rec["completion"] in text
    assert not text.startswith(2 * tok.bos_token)  # the template's BOS, not a second one
    assert ids[-1] == tok.eos_token_id


@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_on_a_4bit_base(
    family: str, family_base: Callable[[str], Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder,
) -> None:  # fmt: skip
    """The base evaluation runs first (eval mode, no grad): on AVX512-BF16 CPUs bitsandbytes
    would repack the 4-bit weights for inference, and training through that kernel has no
    autograd (Qwen2's biased q/k/v layers fail outright). The loader keeps the layout."""
    monkeypatch.setenv("KUBETUNE_TERMINATION_LOG", str(tmp_path / "termination-log"))
    result = train(family_base(family), tmp_path / "out", quantization={"mode": "4bit"})
    assert not [w for w in recwarn if "autograd kernel was not registered" in str(w.message)]
    losses = train_losses(Path(result.run_uri))
    assert losses[8] < losses[1], losses
    card = (Path(result.run_uri) / "adapter" / "README.md").read_text()
    assert "- quantization: 4bit" in card


@pytest.mark.parametrize("family", FAMILIES)
def test_family_resume_reproduces_the_uninterrupted_losses(
    family: str, family_base: Callable[[str], Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("KUBETUNE_TERMINATION_LOG", str(tmp_path / "termination-log"))
    training = {"maxSteps": 6, "saveSteps": 3, "keepLastCheckpoints": 3}
    first = train(family_base(family), tmp_path / "out", training=training,
                  dataset={"packing": "none"})  # fmt: skip
    run_dir = Path(first.run_uri)
    want = train_losses(run_dir)
    # The attempt "died" after step 3's checkpoint: later state is gone.
    shutil.rmtree(run_dir / "checkpoints" / "step-000006")
    shutil.rmtree(run_dir / "adapter")
    metrics = run_dir / "report" / "metrics.jsonl"
    rows = [r for r in metrics.read_text().splitlines() if json.loads(r).get("step", 0) <= 3]
    metrics.write_text("".join(r + "\n" for r in rows))
    again = train(family_base(family), tmp_path / "out", training=training,
                  dataset={"packing": "none"})  # fmt: skip
    assert again.resumed_from is not None and again.resumed_from.endswith("step-000003")
    got = train_losses(run_dir)
    assert sorted(got) == list(range(1, 7))
    for step in (4, 5, 6):
        assert got[step] == pytest.approx(want[step], abs=1e-5), (step, got, want)
