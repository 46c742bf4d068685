"""Model and tokenizer loading: builtin models, GGUF conversion, quantization, LoRA,
hardware checks and the memory preflight."""
