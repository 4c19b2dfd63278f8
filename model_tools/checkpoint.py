"""Inputs and validation: a Qwen2-family Hugging Face checkpoint and a PEFT LoRA adapter.

Everything is checked before any output is written: file presence, safetensors only (pickle
files are refused, never opened), supported architecture and adapter variant, and that every
adapter matrix fits the base weight it targets.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.errors import UserError
from model_tools.safetensors_io import SafetensorsError, TensorEntry, read_header

if TYPE_CHECKING:
    import gguf

SUPPORTED_ARCHITECTURES = {"Qwen2ForCausalLM"}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_LAYER_TENSORS = (
    "input_layernorm.weight", "post_attention_layernorm.weight",
    "self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.k_proj.bias",
    "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.o_proj.weight",
    "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
)
_ADAPTER_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<part>[AB])(?:\.[^.]+)?\.weight$")


class ConvertError(UserError):
    """An input problem; the message names the file or setting and what is wrong."""


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConvertError(f"missing file: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ConvertError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConvertError(f"{path} is not a JSON object")
    return data


def _refuse_pickle(folder: Path, what: str) -> None:
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ConvertError(
            f"{what} {folder} holds only pickle weights ({', '.join(pickles)}); pickle files can run code "
            "when loaded and are refused. Provide safetensors (e.g. save_pretrained(safe_serialization=True))."
        )


@dataclass
class BaseCheckpoint:
    """A validated Qwen2 checkpoint: config, tensor locations, tokenizer files and its README's metadata."""

    path: Path
    config: dict[str, Any]
    tensors: dict[str, TensorEntry]
    tokenizer: dict[str, Any]
    tokenizer_config: dict[str, Any]
    chat_template: str | list[dict[str, str]] | None
    weight_files: list[Path] = field(default_factory=list)
    readme: gguf.Metadata | None = None  # from README.md: licence, tags ... (model_tools.readme)

    @property
    def n_layers(self) -> int:
        return int(self.config["num_hidden_layers"])

    @property
    def vocab_rows(self) -> int:
        return self.tensors["model.embed_tokens.weight"].shape[0]

    def n_params(self) -> int:
        return sum(entry.numel for entry in self.tensors.values())


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _json(index).get("weight_map") or {}
        files = sorted({folder / name for name in weight_map.values()})
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ConvertError(f"shard(s) listed in {index.name} are missing: {', '.join(missing)}")
        return files
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        _refuse_pickle(folder, "base checkpoint")
        raise ConvertError(f"no safetensors weights in base checkpoint {folder}")
    return files


def _chat_template(folder: Path, tokenizer_config: dict[str, Any]) -> str | list[dict[str, str]] | None:
    template = tokenizer_config.get("chat_template")
    jinja = folder / "chat_template.jinja"
    if template is None and jinja.is_file():
        template = jinja.read_text(encoding="utf-8")
    if template is None and (folder / "chat_template.json").is_file():
        template = _json(folder / "chat_template.json").get("chat_template")
    return template


def open_base(folder: Path) -> BaseCheckpoint:
    """Validate a base checkpoint folder and index its tensors (headers only, no weights read)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConvertError(f"base checkpoint folder not found: {folder}")
    if not (folder / "config.json").is_file():
        raise ConvertError(f"{folder} is not a Hugging Face checkpoint folder (it has no config.json): give the "
                           "folder that holds config.json, the *.safetensors weights and tokenizer.json")
    config = _json(folder / "config.json")
    architectures = config.get("architectures") or []
    if config.get("model_type") != "qwen2" or not SUPPORTED_ARCHITECTURES & set(architectures):
        raise ConvertError(
            f"unsupported model: model_type={config.get('model_type')!r}, architectures={architectures}; "
            "only the Qwen2 family (Qwen2ForCausalLM, e.g. Qwen2-7B-Instruct, Qwen2.5) is supported"
        )
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        if key not in config:
            raise ConvertError(f"config.json lacks {key!r}")
    tensors: dict[str, TensorEntry] = {}
    files = _weight_files(folder)
    for file in files:
        try:
            tensors.update(read_header(file))
        except SafetensorsError as exc:
            raise ConvertError(str(exc)) from exc
    tensors = {k: v for k, v in tensors.items() if not k.endswith("rotary_emb.inv_freq")}
    required = ["model.embed_tokens.weight", "model.norm.weight"]
    required += [f"model.layers.{i}.{t}" for i in range(int(config["num_hidden_layers"])) for t in _LAYER_TENSORS]
    if not config.get("tie_word_embeddings", False):
        required.append("lm_head.weight")
    missing = [name for name in required if name not in tensors]
    if missing:
        raise ConvertError(f"base checkpoint lacks {len(missing)} tensor(s), e.g. {', '.join(missing[:3])}")
    if config.get("tie_word_embeddings", False):
        tensors.pop("lm_head.weight", None)
    tokenizer_path = folder / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise ConvertError(f"missing file: {tokenizer_path} (the fast tokenizer is required)")
    tokenizer = _json(tokenizer_path)
    if (tokenizer.get("model") or {}).get("type") != "BPE":
        raise ConvertError(f"{tokenizer_path.name}: expected a byte-level BPE tokenizer (Qwen2)")
    tokenizer_config = _json(folder / "tokenizer_config.json")
    from model_tools.readme import read_readme  # here: model_tools.readme imports this module

    return BaseCheckpoint(folder, config, tensors, tokenizer, tokenizer_config,
                          _chat_template(folder, tokenizer_config), files,
                          read_readme(folder, sum(entry.numel for entry in tensors.values())))


@dataclass(frozen=True)
class LoraTarget:
    """One adapted weight: the base tensor it changes and its LoRA matrices and scale."""

    weight: str
    lora_a: TensorEntry
    lora_b: TensorEntry
    scaling: float
    fan_in_fan_out: bool


@dataclass
class LoraAdapter:
    """A validated PEFT LoRA adapter, indexed by the base weight each pair of matrices targets."""

    path: Path
    config: dict[str, Any]
    targets: dict[str, LoraTarget]
    weights_file: Path


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """peft's rank_pattern/alpha_pattern lookup: a key matches the module name or its suffix."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def open_adapter(folder: Path, base: BaseCheckpoint) -> LoraAdapter:
    """Validate a PEFT LoRA adapter against ``base``: variant, targets and every shape."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConvertError(f"adapter folder not found: {folder}")
    config = _json(folder / "adapter_config.json")
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        _refuse_pickle(folder, "adapter")
        raise ConvertError(f"missing file: {weights}")
    if config.get("peft_type") != "LORA":
        raise ConvertError(f"unsupported adapter type {config.get('peft_type')!r}; only LoRA is supported")
    unsupported = {
        "use_dora": "DoRA", "modules_to_save": "modules_to_save (fully trained extra modules)",
        "layer_replication": "layer replication", "use_qalora": "QA-LoRA",
        "trainable_token_indices": "trainable tokens",
    }
    for key, label in unsupported.items():
        if config.get(key):
            raise ConvertError(f"unsupported adapter variant: {label} ({key}={config[key]!r})")
    if config.get("bias", "none") != "none":
        raise ConvertError(f"unsupported adapter variant: trained biases (bias={config['bias']!r})")
    try:
        entries = read_header(weights)
    except SafetensorsError as exc:
        raise ConvertError(str(exc)) from exc
    pairs: dict[str, dict[str, TensorEntry]] = {}
    for name, entry in entries.items():
        match = _LORA_KEY.match(name)
        if not match or not name.startswith(_ADAPTER_PREFIX):
            raise ConvertError(f"adapter tensor {name!r} is not a LoRA A/B matrix of a linear layer (unsupported)")
        module = match["module"][len(_ADAPTER_PREFIX):]
        pairs.setdefault(module, {})[match["part"]] = entry
    if not pairs:
        raise ConvertError(f"{weights.name} holds no LoRA weights")
    target_modules = config.get("target_modules")
    rsl = bool(config.get("use_rslora"))
    targets: dict[str, LoraTarget] = {}
    for module, parts in sorted(pairs.items()):
        if set(parts) != {"A", "B"}:
            raise ConvertError(f"adapter module {module} lacks lora_{'B' if 'A' in parts else 'A'}")
        leaf = module.rsplit(".", 1)[-1]
        if isinstance(target_modules, list) and leaf not in target_modules:
            raise ConvertError(f"adapter holds weights for {module}, which is not in target_modules {target_modules}")
        weight = f"{module}.weight"
        if weight not in base.tensors:
            raise ConvertError(f"adapter targets {module}, which the base checkpoint does not have")
        a, b = parts["A"], parts["B"]
        w_shape = base.tensors[weight].shape
        rank = int(_pattern_value(config.get("rank_pattern") or {}, module, config.get("r")))
        alpha = float(_pattern_value(config.get("alpha_pattern") or {}, module, config.get("lora_alpha", rank)))
        if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[0] != rank or b.shape[1] != rank:
            raise ConvertError(f"adapter {module}: LoRA shapes A{list(a.shape)} B{list(b.shape)} do not match r={rank}")
        # fan_in_fan_out applies only to weights stored transposed ([in, out], Conv1D style); for
        # nn.Linear peft resets it to False, and so do we.
        fan_in_fan_out = bool(config.get("fan_in_fan_out")) and tuple(w_shape) == (a.shape[1], b.shape[0]) \
            and tuple(w_shape) != (b.shape[0], a.shape[1])
        expected = (a.shape[1], b.shape[0]) if fan_in_fan_out else (b.shape[0], a.shape[1])
        if tuple(w_shape) != expected:
            raise ConvertError(
                f"adapter {module}: LoRA delta shape {list(expected)} does not fit base weight {list(w_shape)} "
                "(was the adapter trained on a different base model?)"
            )
        scaling = alpha / (rank ** 0.5) if rsl else alpha / rank
        targets[weight] = LoraTarget(weight, a, b, scaling, fan_in_fan_out)
    if isinstance(target_modules, list):
        leaves = {w.rsplit(".", 2)[-2] for w in targets}
        absent = sorted(set(target_modules) - leaves)
        if absent:
            raise ConvertError(f"target_modules {absent} match no module of the base checkpoint or have no weights")
    return LoraAdapter(folder, config, targets, weights)
