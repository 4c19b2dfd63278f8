"""Streaming LoRA merge: base tensors are read one at a time and the LoRA delta added on the way.

The arithmetic follows peft's ``merge_and_unload``: the delta ``B @ A * scaling`` is computed in
float32 and added to the weight in float32, then rounded once to the weight's dtype.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from model_tools.checkpoint import BaseCheckpoint, LoraAdapter, LoraTarget
from model_tools.files import atomic_directory
from model_tools.interrupts import raise_if_interrupted
from model_tools.safetensors_io import load_tensor, write_header, write_tensor

if TYPE_CHECKING:
    import torch

SHARD_BYTES = 4 * 1024**3
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "added_tokens.json", "chat_template.jinja",
                   "chat_template.json", "generation_config.json")


def lora_delta(target: LoraTarget) -> torch.Tensor:
    """``B @ A * scaling`` in float32 (transposed for fan_in_fan_out), as peft computes it."""
    import torch

    a = load_tensor(target.lora_a).to(torch.float32)
    b = load_tensor(target.lora_b).to(torch.float32)
    delta = (b @ a) * target.scaling
    return delta.T if target.fan_in_fan_out else delta


def merged_tensors(base: BaseCheckpoint, adapter: LoraAdapter | None) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(name, tensor)`` for every base tensor, with LoRA deltas added, one at a time.

    Like peft's in-place ``weight += delta`` with float32 adapter weights, the sum is formed in
    float32 and rounded once to the weight's dtype.
    """
    import torch

    targets = adapter.targets if adapter else {}
    for name, entry in base.tensors.items():
        raise_if_interrupted()
        tensor = load_tensor(entry)
        target = targets.get(name)
        if target is not None:
            tensor = (tensor.to(torch.float32) + lora_delta(target)).to(tensor.dtype)
        yield name, tensor


def _shards(base: BaseCheckpoint) -> list[list[str]]:
    shards: list[list[str]] = [[]]
    size = 0
    for name, entry in base.tensors.items():
        if shards[-1] and size + entry.nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += entry.nbytes
    return shards


def save_merged(base: BaseCheckpoint, adapter: LoraAdapter | None, out_dir: Path, progress: bool = True) -> Path:
    """Write the merged model as Hugging Face safetensors shards plus config and tokenizer files.

    The folder appears under ``out_dir`` only once complete (built under a temporary name).
    """
    shards = _shards(base)
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    if len(shards) == 1:
        names = ["model.safetensors"]
    stream = merged_tensors(base, adapter)
    bar = tqdm(total=len(base.tensors), desc="merge", unit="tensor", disable=not progress)
    with atomic_directory(Path(out_dir)) as tmp:
        weight_map: dict[str, str] = {}
        for shard, file_name in zip(shards, names, strict=True):
            specs = [(n, base.tensors[n].dtype, base.tensors[n].shape) for n in shard]
            with (tmp / file_name).open("wb") as handle:
                write_header(handle, specs)
                for expected in shard:
                    name, tensor = next(stream)
                    if name != expected:
                        raise RuntimeError(f"merge produced {name} where the shard plan has {expected}")
                    write_tensor(handle, tensor)
                    weight_map[name] = file_name
                    bar.update(1)
        bar.close()
        if len(shards) > 1:
            total = sum(base.tensors[n].nbytes for n in weight_map)
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        config = dict(base.config)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
        for file_name in TOKENIZER_FILES:
            if (base.path / file_name).is_file():
                shutil.copy2(base.path / file_name, tmp / file_name)
    return Path(out_dir)
