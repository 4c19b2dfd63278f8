"""Export a (merged) Qwen2 checkpoint to GGUF for llama.cpp's ``qwen2`` architecture.

Tensor infos are written first (shapes are known from the safetensors headers), then each tensor
is produced, converted and written on its own, so memory holds one tensor at a time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from app.atomic import atomic_path
from app.bench.overlap import OVERLAP_KEY, encode_overlap
from model_tools.checkpoint import BaseCheckpoint, ConvertError, LoraAdapter
from model_tools.lora_merge import merged_tensors
from model_tools.readme import add_model_metadata

if TYPE_CHECKING:
    import gguf
    import numpy as np
    import torch

OUT_TYPES = ("f32", "f16", "bf16")
_SPECIAL_KEYS = ("bos", "eos", "pad", "unk")


@dataclass(frozen=True)
class Vocab:
    """The GGUF tokenizer: tokens padded to the embedding rows, their types, merges, special ids."""

    tokens: list[str]
    types: list[int]
    merges: list[str]
    special_ids: dict[str, int]


def _looks_special(token: str) -> bool:
    return token.startswith("<|") and token.endswith("|>")


def build_vocab(base: BaseCheckpoint) -> Vocab:
    """Tokens, types and merges from tokenizer.json; pads to the embedding rows with unused tokens."""
    import gguf

    model = base.tokenizer["model"]
    by_id: dict[int, tuple[str, gguf.TokenType]] = {i: (t, gguf.TokenType.NORMAL) for t, i in model["vocab"].items()}
    for added in base.tokenizer.get("added_tokens", []):
        kind = gguf.TokenType.CONTROL if added.get("special") or _looks_special(added["content"]) \
            else gguf.TokenType.USER_DEFINED
        by_id[int(added["id"])] = (added["content"], kind)
    rows = base.vocab_rows
    if max(by_id) >= rows:
        raise ConvertError(f"tokenizer has token id {max(by_id)} but the embedding has only {rows} rows")
    tokens, types = [], []
    for i in range(rows):
        token, kind = by_id.get(i, (f"[PAD{i}]", gguf.TokenType.UNUSED))
        tokens.append(token)
        types.append(int(kind))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    token_ids = {t: i for i, t in enumerate(tokens)}
    special: dict[str, int] = {}
    for key in _SPECIAL_KEYS:
        value = base.tokenizer_config.get(f"{key}_token")
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str) and value in token_ids:
            special[key] = token_ids[value]
        elif isinstance(base.config.get(f"{key}_token_id"), int):
            special[key] = base.config[f"{key}_token_id"]
    if "bos" not in special and "<|endoftext|>" in token_ids:
        special["bos"] = token_ids["<|endoftext|>"]
    if "eos" not in special:
        raise ConvertError("cannot determine the eos token "
                           "(tokenizer_config.json eos_token / config.json eos_token_id)")
    return Vocab(tokens, types, merges, special)


def rope_theta(config: dict[str, Any]) -> float:
    params = config.get("rope_parameters") or {}
    return float(config.get("rope_theta") or params.get("rope_theta") or 10000.0)


def _add_hparams(writer: gguf.GGUFWriter, base: BaseCheckpoint, name: str) -> None:
    import gguf

    c = base.config
    writer.add_type("model")
    add_model_metadata(writer, base.readme, name)
    writer.add_context_length(int(c.get("max_position_embeddings", 32768)))
    writer.add_embedding_length(int(c["hidden_size"]))
    writer.add_block_count(base.n_layers)
    writer.add_feed_forward_length(int(c["intermediate_size"]))
    writer.add_head_count(int(c["num_attention_heads"]))
    writer.add_head_count_kv(int(c.get("num_key_value_heads", c["num_attention_heads"])))
    writer.add_rope_freq_base(rope_theta(c))
    writer.add_layer_norm_rms_eps(float(c.get("rms_norm_eps", 1e-6)))
    scaling = c.get("rope_scaling") or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(scaling["factor"]))
        writer.add_rope_scaling_orig_ctx_len(int(scaling["original_max_position_embeddings"]))
    elif kind not in ("default", None):
        raise ConvertError(f"unsupported rope_scaling {scaling!r} in config.json")


def _add_tokenizer(writer: gguf.GGUFWriter, base: BaseCheckpoint) -> None:
    vocab = build_vocab(base)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    writer.add_bos_token_id(vocab.special_ids["bos"])
    writer.add_eos_token_id(vocab.special_ids["eos"])
    if "pad" in vocab.special_ids:
        writer.add_pad_token_id(vocab.special_ids["pad"])
    writer.add_add_bos_token(False)
    if base.chat_template:
        writer.add_chat_template(base.chat_template)


def _add_training_overlap(writer: gguf.GGUFWriter, adapter_dir: Path) -> None:
    """The overlap with the benchmark sets that ``jmedllm train`` recorded in the adapter's training.json,
    for benchmark runs of the model to show beside their scores (:mod:`app.bench.overlap`)."""
    manifest = adapter_dir / "training.json"
    if not manifest.is_file():
        return
    try:
        leakage = json.loads(manifest.read_text(encoding="utf-8"))["leakage"]
        writer.add_string(OVERLAP_KEY, encode_overlap(leakage))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConvertError(f"{manifest}: cannot read its leakage record ({exc!r})") from exc


def gguf_names(base: BaseCheckpoint) -> dict[str, str]:
    """HF tensor name -> llama.cpp tensor name, through gguf-py's own qwen2 name map."""
    import gguf

    mapping = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, base.n_layers)
    names = {}
    for hf_name in base.tensors:
        mapped = mapping.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            raise ConvertError(f"tensor {hf_name} has no qwen2 GGUF name")
        names[hf_name] = mapped
    return names


def _target_type(ndim: int, out_type: str) -> str:
    """Norms and biases (1-D) stay F32; matrices take the output type."""
    return "f32" if ndim == 1 else out_type


def _to_numpy(tensor: torch.Tensor, kind: str) -> np.ndarray:
    import torch

    if kind == "f32":
        return tensor.to(torch.float32).numpy()
    if kind == "f16":
        return tensor.to(torch.float16).numpy()
    return tensor.to(torch.bfloat16).view(torch.int16).numpy().view("uint16")


def export_gguf(base: BaseCheckpoint, adapter: LoraAdapter | None, out_path: Path, out_type: str = "f16",
                name: str = "JMedLLM", progress: bool = True) -> Path:
    """Write ``out_path`` (atomically): hyperparameters, tokenizer, then tensors streamed one by one."""
    import gguf
    import numpy as np

    if out_type not in OUT_TYPES:
        raise ConvertError(f"unsupported output type {out_type!r}; choose one of {', '.join(OUT_TYPES)}")
    names = gguf_names(base)
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "bf16": gguf.LlamaFileType.MOSTLY_BF16}[out_type]
    raw = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
           "bf16": gguf.GGMLQuantizationType.BF16}
    np_dtype = {"f32": np.float32, "f16": np.float16, "bf16": np.uint16}
    itemsize = {"f32": 4, "f16": 2, "bf16": 2}
    with atomic_path(Path(out_path)) as tmp:
        writer = gguf.GGUFWriter(tmp, "qwen2")
        try:
            _add_hparams(writer, base, name)
            writer.add_file_type(int(file_type))
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
            _add_tokenizer(writer, base)
            if adapter is not None:
                _add_training_overlap(writer, adapter.path)
            kinds = {}
            for hf_name, entry in base.tensors.items():
                kind = _target_type(len(entry.shape), out_type)
                kinds[hf_name] = kind
                writer.add_tensor_info(names[hf_name], entry.shape, np.dtype(np_dtype[kind]),
                                       entry.numel * itemsize[kind], raw_dtype=raw[kind])
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            bar = tqdm(total=len(base.tensors), desc=f"export {out_type}", unit="tensor", disable=not progress)
            for hf_name, tensor in merged_tensors(base, adapter):
                writer.write_tensor_data(_to_numpy(tensor, kinds[hf_name]))
                bar.update(1)
            bar.close()
        finally:
            writer.close()
    return Path(out_path)
