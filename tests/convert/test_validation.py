"""Every bad input gets a clear error naming the problem, and no output is left behind."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from model_tools.checkpoint import ConvertError, open_adapter, open_base
from model_tools.cli import convert
from model_tools.files import require_free_space
from tests.convert.conftest import make_tiny


def clone(src: Path, dst: Path) -> Path:
    """Copy a checkpoint folder, hard-linking the big weight files."""
    dst.mkdir(parents=True)
    for item in src.iterdir():
        if item.suffix == ".safetensors":
            (dst / item.name).hardlink_to(item)
        else:
            shutil.copy2(item, dst / item.name)
    return dst


def edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def pickle_base(base: Path, adapter: Path) -> None:
    (base / "model.safetensors").unlink()
    (base / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")


def pickle_adapter(base: Path, adapter: Path) -> None:
    (adapter / "adapter_model.safetensors").unlink()
    (adapter / "adapter_model.bin").write_bytes(b"\x80\x04")


def missing_config(base: Path, adapter: Path) -> None:
    (base / "config.json").unlink()


def missing_tokenizer(base: Path, adapter: Path) -> None:
    (base / "tokenizer.json").unlink()


def missing_adapter_config(base: Path, adapter: Path) -> None:
    (adapter / "adapter_config.json").unlink()


def unsupported_arch(base: Path, adapter: Path) -> None:
    edit_json(base / "config.json", model_type="llama", architectures=["LlamaForCausalLM"])


def dora(base: Path, adapter: Path) -> None:
    edit_json(adapter / "adapter_config.json", use_dora=True)


def not_lora(base: Path, adapter: Path) -> None:
    edit_json(adapter / "adapter_config.json", peft_type="IA3")


def wrong_rank(base: Path, adapter: Path) -> None:
    edit_json(adapter / "adapter_config.json", r=16)


def wrong_targets(base: Path, adapter: Path) -> None:
    edit_json(adapter / "adapter_config.json", target_modules=["q_proj", "c_attn"])


def truncated_weights(base: Path, adapter: Path) -> None:
    weights = base / "model.safetensors"
    data = weights.read_bytes()
    weights.unlink()
    weights.write_bytes(data[: len(data) // 2])


CASES: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "pickle base": (pickle_base, "pickle"),
    "pickle adapter": (pickle_adapter, "pickle"),
    "missing config": (missing_config, "is not a Hugging Face checkpoint folder (it has no config.json)"),
    "missing tokenizer": (missing_tokenizer, "tokenizer.json"),
    "missing adapter config": (missing_adapter_config, "adapter_config.json"),
    "unsupported architecture": (unsupported_arch, "only the Qwen2 family"),
    "DoRA variant": (dora, "DoRA"),
    "not a LoRA": (not_lora, "only LoRA"),
    "rank mismatch": (wrong_rank, "r=16"),
    "target module absent": (wrong_targets, "c_attn"),
    "truncated weights": (truncated_weights, "truncated"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_error_and_no_output(case: str, tmp_path: Path, tiny_dir: Path, tiny_adapter: Path) -> None:
    base = clone(tiny_dir, tmp_path / "base")
    adapter = clone(tiny_adapter, tmp_path / "adapter")
    breaker, expected = CASES[case]
    breaker(base, adapter)
    out = tmp_path / "out"
    result = CliRunner().invoke(convert, ["build", "--base", str(base), "--adapter", str(adapter),
                                          "--out", str(out), "--quant", "Q4_K_M", "--save-merged", str(tmp_path / "m")])
    assert result.exit_code == 1, result.output
    assert "Error:" in result.output and expected in result.output, result.output
    assert not out.exists() and not (tmp_path / "m").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "base"]


def test_adapter_for_another_base_shape_mismatch(tmp_path: Path, tokenizer_dir: Path, tiny_dir: Path,
                                                 tiny_adapter: Path) -> None:
    """An adapter trained on a different base does not fit: the error names module and shapes."""
    other = make_tiny(tmp_path / "wider", tokenizer_dir, hidden_size=96, seed=4)
    open_adapter(tiny_adapter, open_base(tiny_dir))
    with pytest.raises(ConvertError,
                       match=r"down_proj: LoRA delta shape \[64, 128\] does not fit base weight \[96, 192\]"):
        open_adapter(tiny_adapter, open_base(other))


def test_disk_space_is_checked_first(tmp_path: Path) -> None:
    with pytest.raises(ConvertError, match="not enough free disk space"):
        require_free_space(tmp_path / "not-yet", 10**18)


def test_unknown_quant_type_is_refused(tmp_path: Path, tiny_dir: Path) -> None:
    result = CliRunner().invoke(convert, ["build", "--base", str(tiny_dir), "--out", str(tmp_path / "o"),
                                          "--quant", "Q3_K_S"])
    assert result.exit_code == 2 and "Q3_K_S" in result.output
    assert not (tmp_path / "o").exists()
