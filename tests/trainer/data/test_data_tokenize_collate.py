"""Templates, labels, truncation, padding and packing (with a real no-leakage check)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from kubetune_api.spec_data import DatasetSpec
from kubetune_trainer.data.collate import (
    POSITION_ID_PACKING,
    PackedCollator,
    PackingPlan,
    PaddingCollator,
    pack_position_ids,
    pack_wrapped,
    plan_packing,
    resolve_packing,
)
from kubetune_trainer.data.templates import PREAMBLE, render, render_batch, render_prompt
from kubetune_trainer.data.tokenize import (
    IGNORE,
    TokenizedSet,
    tokenize_classification,
    tokenize_sft,
    tokenize_text,
)

REC = {"prompt": "What lowers LDL?", "completion": "Statins and diet."}


def spec(**kw: Any) -> DatasetSpec:
    return DatasetSpec(source="x.jsonl", **kw)


def test_alpaca_layout_is_the_documented_one(tokenizer: Any) -> None:
    msgs = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}]
    prompt, completion = render(msgs, tokenizer, "auto")  # no chat template -> alpaca
    assert prompt == f"{PREAMBLE}\n\n### Instruction:\nQ1\n\n### Response:\n"
    assert completion == "A1"
    assert render(msgs, tokenizer, "plain") == ("Q1\n", "A1")


def test_chat_template_used_when_present(chat_tokenizer: Any) -> None:
    assert render_prompt("Hi", chat_tokenizer, system_prompt="Be brief.") == (
        "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\n"
    )
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    assert render(msgs, chat_tokenizer, "auto")[1] == "Yo</s>\n"
    ids = tokenize_sft([REC], chat_tokenizer, spec())
    assert chat_tokenizer.decode(ids.input_ids[0]).endswith("<|assistant|>\nStatins and diet.</s>")


def test_batched_chat_render_is_the_per_conversation_render(chat_tokenizer: Any) -> None:
    # The chat template renders a batch in two calls; each conversation must come out as
    # render() gives it alone, multi-turn and history-rewriting templates included.
    convs = [
        [{"role": "user", "content": f"Q{i}"}, {"role": "assistant", "content": f"A{i}"}]
        for i in range(3)
    ]
    convs.append([{"role": "system", "content": "Be brief."}, *convs[0], *convs[1]])
    got = render_batch(convs, chat_tokenizer, "chat")
    assert got == [render(m, chat_tokenizer, "chat") for m in convs]
    assert got[3] == ("<|system|>\nBe brief.</s>\n<|user|>\nQ0</s>\n<|assistant|>\nA0</s>\n"
                      "<|user|>\nQ1</s>\n<|assistant|>\n", "A1</s>\n")  # fmt: skip
    tok = copy.deepcopy(chat_tokenizer)  # drops earlier assistant turns: no common prefix
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] != 'assistant' or loop.last %}"
        "<|{{ m['role'] }}|>{{ m['content'] }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    assert render_batch(convs, tok, "chat") == [render(m, tok, "chat") for m in convs]
    assert render_batch(convs, tok, "chat")[3][1] == "A1"  # the raw turn (fallback)


def test_completion_only_labels_and_eos(tokenizer: Any) -> None:
    out = tokenize_sft([REC], tokenizer, spec(template="plain"))
    ids, labels = out.input_ids[0], out.labels[0]
    n_prompt = len(tokenizer("What lowers LDL?\n")["input_ids"])
    assert labels[:n_prompt] == [IGNORE] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:]
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[n_prompt:], skip_special_tokens=True) == "Statins and diet."
    full = tokenize_sft([REC], tokenizer, spec(template="plain", completion_only_loss=False))
    assert full.labels[0] == full.input_ids[0]


def test_truncation_keeps_the_answer_and_is_counted(tokenizer: Any) -> None:
    long = {"prompt": "blood pressure " * 40 + "What lowers LDL?", "completion": "Statins."}
    out = tokenize_sft([long, REC], tokenizer, spec(template="plain", max_seq_length=32))
    assert out.truncated == 1
    assert len(out.input_ids[0]) == 32
    assert tokenizer.decode(out.input_ids[0]).endswith("LDL?\nStatins.</s>")
    assert out.lengths[1] == len(out.input_ids[1]) < 32


def test_text_and_classification(tokenizer: Any) -> None:
    txt = tokenize_text([{"text": "genome " * 50}], tokenizer, spec(max_seq_length=16))
    assert txt.truncated == 1 and len(txt.input_ids[0]) == 16
    assert txt.labels[0] == txt.input_ids[0]
    cls = tokenize_classification([{"text": "BRCA1", "label": 1}], tokenizer, spec())
    assert cls[0]["labels"] == 1


def test_padding_collator_pads_to_multiple_of_8() -> None:
    batch = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [5] * 9,
             "labels": [5] * 9}]  # fmt: skip
    out = PaddingCollator(pad_token_id=0)(batch)
    assert out["input_ids"].shape == (2, 16)
    assert out["attention_mask"][0].tolist() == [1, 1, 1] + [0] * 13
    assert out["labels"][0].tolist() == [-100, 6, 7] + [-100] * 13
    cls = PaddingCollator(pad_token_id=0)([{"input_ids": [1], "labels": 2}])
    assert cls["labels"].tolist() == [2]


def test_packing_rows_positions_and_boundaries() -> None:
    data = TokenizedSet([[1] * 5, [2] * 3, [3] * 6, [4] * 2], [[1] * 5, [2] * 3, [3] * 6, [4] * 2])
    rows = pack_position_ids(data, max_len=8)
    packed = sorted(t for r in rows for t in r["input_ids"])
    assert packed == sorted(t for ex in data.input_ids for t in ex)
    assert all(len(r["input_ids"]) <= 8 for r in rows) and len(rows) == 2
    assert rows[0]["position_ids"] == [0, 1, 2, 3, 4, 5, 0, 1]  # 6 then 2
    assert rows[0]["labels"] == [IGNORE, 3, 3, 3, 3, 3, IGNORE, 4]
    batch = PackedCollator(pad_token_id=0, max_length=8)(rows)
    assert batch["input_ids"].shape == (2, 8) and "attention_mask" not in batch
    assert batch["position_ids"][1].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    wrapped = pack_wrapped(data, max_len=8)
    assert [len(r["input_ids"]) for r in wrapped] == [8, 8]
    assert "attention_mask" in PackedCollator(0, 8, cross_attention=True)(wrapped)


def tiny_decoder(model_type: str) -> Any:
    """A 2-layer decoder of `model_type`, random weights, built offline from its config."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.for_model(model_type, vocab_size=600, hidden_size=64,
                               intermediate_size=128, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=4,
                               max_position_embeddings=256)  # fmt: skip
    return AutoModelForCausalLM.from_config(cfg).eval()


PACK_RECS = [
    REC,
    {"prompt": "Name a gene.", "completion": "BRCA1"},
    {"prompt": "Should I hold?", "completion": "Hold at <PRICE>."},
]


@pytest.mark.parametrize("model_type", sorted(POSITION_ID_PACKING))
def test_position_id_packing_does_not_leak_attention(tokenizer: Any, model_type: str) -> None:
    model = tiny_decoder(model_type)
    assert model.config.model_type == model_type
    assert plan_packing("auto", "causal_lm", "sft", model) == PackingPlan("position_ids")
    data = tokenize_sft(PACK_RECS, tokenizer, spec(template="plain", max_seq_length=128))
    rows = pack_position_ids(data, max_len=128)
    assert len(rows) == 1  # all three share one row
    batch = PackedCollator(tokenizer.pad_token_id, 128)(rows)
    with torch.no_grad():
        packed = model(**{k: v for k, v in batch.items() if k != "labels"},
                       use_cache=False).logits[0]  # fmt: skip
        starts = [i for i, p in enumerate(batch["position_ids"][0].tolist()) if p == 0]
        for ids in data.input_ids:
            start = next(s for s in starts if batch["input_ids"][0, s : s + len(ids)].tolist()
                         == ids)  # fmt: skip
            alone = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
            torch.testing.assert_close(packed[start : start + len(ids)], alone, atol=1e-5,
                                       rtol=0)  # fmt: skip
        # Control: the same row attended across examples (wrapped) does change logits.
        crossed = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
        last = max(starts[:3])
        n = next(len(i) for i in data.input_ids
                 if batch["input_ids"][0, last : last + len(i)].tolist() == i)  # fmt: skip
        assert (crossed[last : last + n] - packed[last : last + n]).abs().max() > 1e-3


def test_packing_falls_back_to_padding_where_position_ids_would_leak() -> None:
    """The real MiniLM (BERT): restarting position ids do not separate packed examples, so
    packing would leak; the plan is dynamic padding, and it says so."""
    from transformers import AutoModel, AutoTokenizer

    from kubetune_trainer.modeling import builtin

    tok = AutoTokenizer.from_pretrained(builtin.minilm_dir())
    bert = AutoModel.from_pretrained(builtin.minilm_dir()).eval()
    assert bert.config.model_type == "bert" and "bert" not in POSITION_ID_PACKING
    for asked in ("auto", "position_ids"):
        plan = plan_packing(asked, "causal_lm", "text", bert)
        assert plan.mode == "none"
        assert f"packing {asked}: model type 'bert' is not known" in plan.note
        assert "using dynamic padding" in plan.note
    a, b = (tok(t)["input_ids"] for t in ("BRCA1 loss in breast cancer", "TP53 and apoptosis"))
    packed = TokenizedSet([a, b], [a, b])
    batch = PackedCollator(tok.pad_token_id, len(a) + len(b))(pack_position_ids(packed, 64))
    with torch.no_grad():
        row = bert(input_ids=batch["input_ids"], position_ids=batch["position_ids"])
        alone = bert(input_ids=torch.tensor([a])).last_hidden_state[0]
    start = next(s for s in range(len(b) + 1) if batch["input_ids"][0, s : s + len(a)].tolist()
                 == a)  # fmt: skip
    assert batch["position_ids"][0, start].item() == 0
    leaked = row.last_hidden_state[0, start : start + len(a)] - alone
    assert leaked.abs().max() > 1e-2  # `a` attended to `b`: packing would leak here


def test_packing_plan_by_task_kind_and_model(caplog: Any) -> None:
    assert plan_packing("auto", "causal_lm", "sft", "llama").mode == "position_ids"
    assert plan_packing("position_ids", "causal_lm", "text", "mistral").mode == "position_ids"
    assert plan_packing("auto", "sequence_classification", "classification", "llama") == (
        PackingPlan("none")
    )  # nothing to pack for an encoder task, nothing to say
    assert plan_packing("wrapped", "causal_lm", "text", "gpt2") == PackingPlan("wrapped")
    assert plan_packing("none", "causal_lm", "sft", "llama") == PackingPlan("none")
    unknown = plan_packing("auto", "causal_lm", "sft")  # the caller did not say
    assert unknown.mode == "none" and "an unknown architecture" in unknown.note
    with caplog.at_level("WARNING", logger="kubetune_trainer.data.collate"):
        assert resolve_packing("auto", "causal_lm", "sft", "gpt2") == "none"
    assert "model type 'gpt2' is not known" in caplog.text


def test_plan_rows_places_every_example_once_within_max_len() -> None:
    """Property test over random lengths: each index exactly once, no row over max_len,
    the same rows for the same input, and no two rows that could have been one (a new row
    is opened only when no open row has room, so any two rows hold more than max_len)."""
    import random

    from kubetune_trainer.data.collate import plan_rows

    rng = random.Random(7)
    for trial in range(200):
        max_len = rng.choice([8, 64, 512])
        lengths = [rng.randint(1, max_len + 20) for _ in range(rng.randint(0, 300))]
        rows = plan_rows(lengths, max_len)
        placed = sorted(i for r in rows for i in r)
        assert placed == list(range(len(lengths))), trial
        fill = [sum(min(lengths[i], max_len) for i in r) for r in rows]
        assert all(0 < f <= max_len for f in fill), trial
        assert rows == plan_rows(list(lengths), max_len), trial
        fill.sort()
        assert len(fill) < 2 or fill[0] + fill[1] > max_len, trial
