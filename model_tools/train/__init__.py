"""``jmedllm train``: the paper's MFPT (continued pre-training) and MPEFT (LoRA) with transformers, peft and TRL."""
