"""Real checkpoints for the conversion tests: the demo model as a Hugging Face Qwen2 checkpoint,
a small random Qwen2 with the real tokenizer, and LoRA adapters with non-zero B matrices.

The real model's files take several GB: they live while this package's tests run and are deleted
after them (``scratch_folder``), so the rest of the suite does not carry them on disk.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import scratch_folder

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_adapter(model_dir: Path, out_dir: Path, seed: int, **lora: Any) -> Path:
    """Create a PEFT LoRA adapter for ``model_dir`` whose B matrices are random (so it changes the output)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    options: dict[str, Any] = {"r": 8, "lora_alpha": 16, "target_modules": LORA_TARGETS, "lora_dropout": 0.0, **lora}
    peft_model = get_peft_model(model, LoraConfig(**options))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.02)
    peft_model.save_pretrained(str(out_dir), safe_serialization=True)
    return out_dir


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, demo_model_path: Path) -> Path:
    """The demo model's real Qwen2 tokenizer (with its chat template), saved as HF files."""
    from transformers import AutoTokenizer

    path = demo_model_path
    folder = tmp_path_factory.mktemp("tokenizer")
    AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).save_pretrained(folder)
    return folder


@pytest.fixture(scope="package")
def real_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path, demo_model_path: Path) -> Iterator[Path]:
    """Qwen2.5-Coder-0.5B-Instruct as a bfloat16 safetensors checkpoint (untied output, like Qwen2-7B)."""
    from transformers import AutoModelForCausalLM

    path = demo_model_path
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    # not declared on the model class, so mypy checks them against torch's Module.__setattr__ (tensors, modules)
    model.hf_quantizer = None  # type: ignore[assignment]
    model.is_quantized = False  # type: ignore[assignment]
    del model.config.quantization_config
    # PreTrainedModel.to is wrapped with functools.wraps, whose typeshed type does not bind self
    model = model.to(torch.bfloat16)  # type: ignore[arg-type]
    with scratch_folder(tmp_path_factory, "qwen05") as folder:
        model.save_pretrained(folder, safe_serialization=True)
        del model
        for item in tokenizer_dir.iterdir():
            shutil.copy2(item, folder / item.name)
        yield folder


@pytest.fixture(scope="package")
def real_adapter(tmp_path_factory: pytest.TempPathFactory, real_dir: Path) -> Iterator[Path]:
    with scratch_folder(tmp_path_factory, "qwen05-lora") as folder:
        yield make_adapter(real_dir, folder, seed=1)


def make_tiny(folder: Path, tokenizer_dir: Path, vocab_size: int = 151936, tied: bool = True,
              seed: int = 0, hidden_size: int = 64) -> Path:
    """A random 2-layer Qwen2 with the real tokenizer, saved as float32 safetensors."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    # rope_theta: transformers 4.x's keyword (>=4.46 is supported); 5.x still accepts it (as rope_parameters)
    # but no longer declares it
    config = Qwen2Config(  # type: ignore[call-arg]
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        tie_word_embeddings=tied, rope_theta=1000000.0, rms_norm_eps=1e-6,
        bos_token_id=151643, eos_token_id=151645, initializer_range=0.05)
    model = Qwen2ForCausalLM(config).to(torch.float32)  # type: ignore[arg-type]  # functools.wraps: see real_dir
    with torch.no_grad():  # random non-zero q/k/v biases, so a forgotten bias shows in the logits
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0.0, 0.5)
    model.save_pretrained(folder, safe_serialization=True)
    for item in tokenizer_dir.iterdir():
        shutil.copy2(item, folder / item.name)
    return folder


@pytest.fixture(scope="package")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    return make_tiny(tmp_path_factory.mktemp("tiny"), tokenizer_dir)


@pytest.fixture(scope="package")
def tiny_adapter(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Path:
    return make_adapter(tiny_dir, tmp_path_factory.mktemp("tiny-lora"), seed=2)


@pytest.fixture(scope="package")
def real_f16(tmp_path_factory: pytest.TempPathFactory, real_dir: Path, real_adapter: Path) -> Iterator[Path]:
    """The real model merged with its adapter and exported to F16 GGUF."""
    from model_tools.checkpoint import open_adapter, open_base
    from model_tools.gguf_export import export_gguf

    base = open_base(real_dir)
    with scratch_folder(tmp_path_factory, "real-gguf") as folder:
        yield export_gguf(base, open_adapter(real_adapter, base), folder / "real-f16.gguf", "f16", progress=False)
