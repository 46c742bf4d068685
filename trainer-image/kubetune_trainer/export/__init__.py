"""Export a trained adapter: merge it into its base (safetensors) and/or write GGUF.

- merge.py: base reloaded in full precision (never 4-bit), LoRA merged, saved.
- gguf_export.py: a merged Llama-architecture model -> GGUF (f32, f16 or q8_0) with the
  tokenizer metadata llama.cpp reads.
"""
