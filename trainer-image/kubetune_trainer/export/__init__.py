"""Export a trained adapter: merge it into its base (safetensors) and/or write GGUF.

- merge.py: base reloaded in full precision (never 4-bit), LoRA merged, saved.
- gguf_export.py: a merged Llama/Mistral/Qwen2/Gemma model -> GGUF (f32, f16, q8_0; q4_0 and
  q4_k_m through llama.cpp's quantizer in gguf_quantize.py) with the
  tokenizer metadata llama.cpp reads.
"""
