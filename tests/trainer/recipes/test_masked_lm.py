"""Masked LM on a real pretrained encoder: MiniLM (BERT) + LoRA on query/value learns the
masked tokens of papers text prepared by the data layer; only the adapter is saved."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from kubetune_trainer.engine.main import execute
from kubetune_trainer.modeling import builtin
from kubetune_trainer.recipes.sft import MaskedLMCollator
from tests.support.builders import make_job, train_losses

REPO = Path(__file__).resolve().parents[3]
PAPERS = REPO / "examples" / "data" / "papers" / "papers.json"


def test_masked_lm_collator_masks_15_percent_seeded_never_special_tokens() -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(builtin.minilm_dir())
    texts = [f"the {w} cells of patient {i} were stained and counted twice" for i, w in
             enumerate(["red", "white", "stem", "blood", "nerve", "liver"] * 8)]  # fmt: skip
    batch = [{"input_ids": tok(t)["input_ids"], "labels": [0]} for t in texts]
    a = MaskedLMCollator(tok, seed=7)(batch)
    assert torch.equal(a["input_ids"], MaskedLMCollator(tok, seed=7)(batch)["input_ids"])
    assert not torch.equal(a["labels"], MaskedLMCollator(tok, seed=8)(batch)["labels"])
    ids = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(b["input_ids"]) for b in batch], batch_first=True, padding_value=-1
    )
    width = ids.shape[1]
    original = torch.nn.functional.pad(ids, (0, a["labels"].shape[1] - width), value=-1)
    masked = a["labels"] != -100
    # Labels are the original ids at masked places; never a special token or padding.
    assert torch.equal(a["labels"][masked], original[masked])
    special = {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id, -1}
    assert not any(int(t) in special for t in original[masked])
    share = masked.sum().item() / sum(len(b["input_ids"]) - 2 for b in batch)
    assert 0.08 < share < 0.22, share
    # Most masked places read [MASK] in the input; unmasked tokens are left as they were.
    assert (a["input_ids"][masked] == tok.mask_token_id).float().mean() > 0.6
    real = (original != -1) & ~masked
    assert torch.equal(a["input_ids"][real], original[real])


def test_minilm_masked_lm_lora_loss_falls_and_only_the_adapter_is_saved(tmp_path: Path) -> None:
    job = make_job(
        tmp_path, name="mlm",
        model={"base": "builtin:all-minilm-l6-v2", "task": "masked_lm"},
        # The sentence-transformers MiniLM ships no MLM head: its transform trains in full.
        adapter={"r": 8, "alpha": 16, "targetModules": ["query", "value"],
                 "modulesToSave": ["transform"]},
        dataset={"source": str(PAPERS), "format": "papers", "maxSeqLength": 48,
                 "validation": {"fraction": 0.1}, "papers": {"chunkOverlap": 0}},
        training={"maxSteps": 10, "microBatchSize": 8, "learningRate": 0.003},
        evaluation={"enabled": True},  # a masked LM is evaluated by its eval loss alone
    )  # fmt: skip
    said: list[str] = []
    code, res = execute(job, say=said.append)
    assert code == 0 and res is not None
    assert any("papers re-chunked with the base's tokenizer" in s for s in said)
    assert any("(BertForMaskedLM)" in s for s in said)
    assert "post-training generation skipped: model.task masked_lm (eval loss only)" in said
    losses = train_losses(Path(res.run_uri))
    steps = sorted(losses)
    first, last = (sum(losses[s] for s in part) / 3 for part in (steps[:3], steps[-3:]))
    assert last < first - 1.0, losses
    assert res.tuned_eval_loss < res.base_eval_loss - 1.0, (res.base_eval_loss, res.tuned_eval_loss)

    adapter = Path(res.adapter.uri)
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert set(cfg["target_modules"]) == {"query", "value"}
    assert cfg["modules_to_save"] == ["transform"]
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        tensors = {n: f.get_tensor(n) for n in f.keys()}  # noqa: SIM118 - safe_open has no iter
    lora = [n for n in tensors if ".lora_" in n]
    head = [n for n in tensors if ".lora_" not in n]
    assert len(lora) == 6 * 2 * 2  # 6 layers x (query, value) x (A, B)
    assert head and all(".cls.predictions.transform." in n for n in head), head
    hidden = 384
    numel = sum(t.numel() for t in tensors.values())
    # LoRA: r x (in + out) per module; transform: dense (h x h + h) and LayerNorm (2h).
    assert numel == 12 * 8 * (hidden + hidden) + hidden * hidden + hidden + 2 * hidden
    size = (adapter / "adapter_model.safetensors").stat().st_size
    assert numel * 4 <= size < numel * 4 + 8192  # fp32, a header: no embedding, no encoder
