"""What a user would pick instead of kubetune, set up as their documentation sets it up.

Every alternative trains the same LoRA (r, alpha, targets) on the same records, tokenizer,
chat template, micro batch and learning rate, for the same one epoch, in the precision its
own defaults give (TRL's SFTConfig turns bf16 autocast on, transformers' Trainer does not;
a `-bf16` name sets `bf16=True`, what a user on a bf16-capable CPU would add), so tokens/s
compares the data pipeline, the loop and the dtype each user gets:

- hf-dynamic: transformers Trainer with the tokenizer truncating (no padding) and
  DataCollatorForLanguageModeling padding each batch to its longest row: the defaults (fp32).
- hf-group-by-length: the same with `train_sampling_strategy="group_by_length"`
  (transformers 5's name for `group_by_length=True`): batches of similar lengths;
  hf-group-by-length-bf16 with bf16 autocast too.
- trl-sft: TRL SFTTrainer defaults on prompt/completion records (completion-only loss,
  dynamic padding).
- trl-packing: SFTTrainer `packing=True` (best-fit decreasing into max_length rows, with
  position_ids so attention may stay inside each example where the kernel supports it).
- trl-padding-free: SFTTrainer `padding_free=True` (one flat row per batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALTERNATIVES = (
    "hf-dynamic",
    "hf-group-by-length",
    "hf-group-by-length-bf16",
    "trl-sft",
    "trl-packing",
    "trl-padding-free",
)


def lora_model(model_dir: Path, lora: dict[str, Any]) -> Any:
    """The base in fp32 with the shared LoRA, as peft's docs set it up (bf16 is autocast)."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return get_peft_model(model, _lora(lora))


def _lora(lora: dict[str, Any]) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=lora["targetModules"],
        task_type="CAUSAL_LM",
    )


def trainer_args(staging: Path, micro_batch: int) -> dict[str, Any]:
    """TrainingArguments every run shares (no checkpoints, no logging, one epoch)."""
    return {
        "output_dir": str(staging),
        "per_device_train_batch_size": micro_batch,
        "num_train_epochs": 1,
        "learning_rate": 2e-4,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1000,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "seed": 42,
    }


@dataclass(frozen=True)
class Setup:
    """What every alternative trains with (the same as kubetune's run in throughput.py)."""

    model_dir: Path
    rows: list[dict[str, str]]
    max_len: int
    micro_batch: int
    lora: dict[str, Any]
    timer: Any  # the step timer callback
    staging: Path
    counting: Any  # wraps a data collator to count real tokens


def chat_texts(tok: Any, batch: dict[str, list[str]]) -> list[str]:
    """A batch of prompt/completion rows through the chat template, as the tutorials do."""
    return [
        tok.apply_chat_template(
            [{"role": "user", "content": p}, {"role": "assistant", "content": c}],
            tokenize=False,
        )
        for p, c in zip(batch["prompt"], batch["completion"], strict=True)
    ]


def build(name: str, setup: Setup) -> tuple[Any, Any]:
    """(trainer, counting collator) for the alternative `name`."""
    return (_hf if name.startswith("hf-") else _trl)(name, setup)


def _hf(name: str, a: Setup) -> tuple[Any, Any]:
    import datasets
    from transformers import (
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    tok = AutoTokenizer.from_pretrained(a.model_dir)

    def fmt(batch: dict[str, list[str]]) -> dict[str, Any]:
        return tok(chat_texts(tok, batch), truncation=True, max_length=a.max_len)

    ds = datasets.Dataset.from_list(a.rows).map(
        fmt, batched=True, remove_columns=["prompt", "completion"]
    )
    kw = trainer_args(a.staging, a.micro_batch)
    kw["bf16"] = name.endswith("-bf16")  # autocast; the fp32 weights stay fp32
    if name.startswith("hf-group-by-length"):
        ds = ds.map(lambda r: {"length": len(r["input_ids"])})
        kw["train_sampling_strategy"] = "group_by_length"
    collator = a.counting(DataCollatorForLanguageModeling(tok, mlm=False), tok.pad_token_id)
    trainer = Trainer(
        model=lora_model(a.model_dir, a.lora),
        args=TrainingArguments(**kw),
        train_dataset=ds,
        data_collator=collator,
        callbacks=[a.timer],
    )
    return trainer, collator


def _trl(name: str, a: Setup) -> tuple[Any, Any]:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(a.model_dir)
    # Conversational prompt/completion records: TRL applies the chat template itself.
    ds = datasets.Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": r["prompt"]}],
                "completion": [{"role": "assistant", "content": r["completion"]}],
            }
            for r in a.rows
        ]
    )
    cfg = SFTConfig(
        **trainer_args(a.staging, a.micro_batch),
        # padding_free without packing refuses a max_length it would not enforce; the
        # records are generated within it (the template adds a few tokens at most).
        max_length=None if name == "trl-padding-free" else a.max_len,
        packing=name == "trl-packing",
        padding_free=name == "trl-padding-free",
    )
    model = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=torch.float32)
    trainer = SFTTrainer(
        model=model,
        args=cfg,
        train_dataset=ds,
        processing_class=tok,
        peft_config=_lora(a.lora),
        callbacks=[a.timer],
    )
    collator = a.counting(trainer.data_collator, tok.pad_token_id)
    trainer.data_collator = collator
    return trainer, collator
