"""The streaming merge equals peft's merge_and_unload, and --save-merged writes a loadable checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model_tools import lora_merge
from model_tools.checkpoint import open_adapter, open_base
from model_tools.lora_merge import merged_tensors, save_merged
from tests.convert.conftest import make_adapter


def peft_merged_state(model_dir: Path, adapter_dir: Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    return {k: v.detach().clone() for k, v in merged.state_dict().items()}


def test_streaming_merge_equals_peft_on_real_qwen2(real_dir: Path, real_adapter: Path) -> None:
    base = open_base(real_dir)
    adapter = open_adapter(real_adapter, base)
    assert len(adapter.targets) == 24 * 7
    reference = peft_merged_state(real_dir, real_adapter, torch.bfloat16)
    changed = 0
    for name, tensor in merged_tensors(base, adapter):
        assert tensor.dtype == torch.bfloat16
        assert torch.equal(tensor, reference[name]), name  # bit-identical to peft in bfloat16
        if name in adapter.targets:
            from model_tools.safetensors_io import load_tensor

            changed += int(not torch.equal(tensor, load_tensor(base.tensors[name])))
    assert changed == len(adapter.targets)


def test_rslora_and_rank_pattern_match_peft(tmp_path: Path, tiny_dir: Path) -> None:
    adapter_dir = make_adapter(tiny_dir, tmp_path / "rs", seed=5, use_rslora=True, lora_alpha=32,
                               rank_pattern={"down_proj": 4}, alpha_pattern={"o_proj": 8})
    base = open_base(tiny_dir)
    adapter = open_adapter(adapter_dir, base)
    assert adapter.targets["model.layers.0.mlp.down_proj.weight"].lora_a.shape[0] == 4
    reference = peft_merged_state(tiny_dir, adapter_dir, torch.float32)
    for name, tensor in merged_tensors(base, adapter):
        torch.testing.assert_close(tensor, reference[name], rtol=0, atol=1e-6)


def test_save_merged_sharded_loads_in_transformers(tmp_path: Path, tiny_dir: Path, tiny_adapter: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(lora_merge, "SHARD_BYTES", 20 * 1024**2)
    base = open_base(tiny_dir)
    out = save_merged(base, open_adapter(tiny_adapter, base), tmp_path / "merged", progress=False)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert (out / "tokenizer.json").is_file() and (out / "config.json").is_file()
    assert not list(tmp_path.glob(".*partial"))
    reference = peft_merged_state(tiny_dir, tiny_adapter, torch.float32)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    ids = torch.tensor([[9707, 11, 1879, 0, 151645]])
    ref_model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    ref_model.load_state_dict(reference)
    with torch.inference_mode():
        torch.testing.assert_close(model(ids).logits, ref_model(ids).logits, rtol=0, atol=1e-5)
