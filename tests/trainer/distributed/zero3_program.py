"""A torchrun rank: ZeRO-3 really partitions a LoRA model, and adapter_state_dict gathers it.

The persistence threshold is 0 so every parameter (even tiny LoRA matrices) is sliced
across ranks, as the large ones of a real model are. Rank 0 checks the gathered adapter
against the weights it had before partitioning; exit 0 only if they match exactly.
"""

from __future__ import annotations

import deepspeed
import torch
import torch.distributed as dist
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.integrations import HfDeepSpeedConfig

from kubetune_trainer.distributed import adapter_state_dict, exit_rank, zero3_enabled

CONFIG = {
    "train_micro_batch_size_per_gpu": 1,
    "gradient_accumulation_steps": 1,
    "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
    "zero_allow_untested_optimizer": True,
}


def main() -> int:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
    )
    model = get_peft_model(
        LlamaForCausalLM(cfg), LoraConfig(r=8, target_modules=["q_proj", "v_proj"])
    )
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero; random values make the comparison mean something
            torch.nn.init.normal_(p)
    expected = {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}
    hf_ds = HfDeepSpeedConfig(CONFIG)  # noqa: F841  (kept alive: transformers reads it weakly)
    assert zero3_enabled()
    trainable = [p for p in model.parameters() if p.requires_grad]
    engine, *_ = deepspeed.initialize(
        model=model, optimizer=torch.optim.AdamW(trainable, lr=0.0), config=CONFIG
    )
    rank = dist.get_rank()
    sliced = [p for p in trainable if p.numel() == 0 and p.ds_numel > 0]
    print(f"rank {rank}: {len(sliced)} of {len(trainable)} adapter tensors partitioned", flush=True)
    naive = get_peft_model_state_dict(model)  # what rank 0 alone would write
    empty = sum(1 for v in naive.values() if v.numel() == 0)
    gathered = adapter_state_dict(model)  # every rank enters the gather
    code = 0
    if rank == 0:
        assert gathered is not None
        same = gathered.keys() == expected.keys() and all(
            torch.equal(gathered[k], expected[k]) for k in expected
        )
        print(f"rank 0: naive save has {empty} empty tensors; gathered matches: {same}", flush=True)
        code = 0 if same and len(sliced) == len(trainable) and empty == len(naive) else 1
    else:
        code = 0 if gathered == {} else 1
    del engine
    return code


if __name__ == "__main__":
    exit_rank(main())
