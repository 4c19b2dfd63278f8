"""Model tools: merge a LoRA adapter into a Qwen2 checkpoint, export GGUF, quantize, verify."""
