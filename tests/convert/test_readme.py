"""The checkpoint's README.md reaches the GGUF: llama.cpp's licence keys from its front matter, the
body's not-for-medical-use sentences in ``general.description``, kept through quantization."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import pytest

from model_tools.checkpoint import ConvertError, open_base
from model_tools.readme import MAX_README_BYTES, add_model_metadata, read_readme, usage_sentences
from tests.conftest import assert_clean_error, run_cli

JMEDLLM_CARD = """---
license: cc-by-nc-sa-4.0
license_name: CC BY-NC-SA 4.0
license_link: https://creativecommons.org/licenses/by-nc-sa/4.0/
language:
- ja
- en
tags: [medical]
base_model: Qwen/Qwen2-7B-Instruct
---
# JMedLLM-v1-7B

This model is under development and not for medical use.
It answers Japanese medical questions.
"""
WARNING = "This model is under development and not for medical use."
# keys llama.cpp derives from the folder's name (and --outfile), not from the README
NOT_FROM_README = {"general.name", "general.basename", "general.size_label", "general.finetune"}


def with_readme(tiny_dir: Path, folder: Path, card: str) -> Path:
    """The shared tiny checkpoint (linked, not copied) plus ``card`` as its README.md."""
    folder.mkdir()
    for item in tiny_dir.iterdir():
        (folder / item.name).symlink_to(item)
    (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


def general_fields(path: Path) -> dict[str, object]:
    reader = gguf.GGUFReader(path)
    return {key: field.contents() for key, field in reader.fields.items() if key.startswith("general.")}


@pytest.mark.slow
def test_build_carries_licence_and_warning_into_f16_and_q4_k_m(tmp_path: Path, tiny_dir: Path) -> None:
    base = with_readme(tiny_dir, tmp_path / "checkpoint", JMEDLLM_CARD)
    out = tmp_path / "out"
    result = run_cli("convert", "build", "--base", str(base), "--out", str(out), "--quant", "Q4_K_M",
                     "--no-verify", "--name", "JMedLLM-v1-7B")
    assert result.returncode == 0, result.stdout + result.stderr
    for file in ("JMedLLM-v1-7B-f16.gguf", "JMedLLM-v1-7B-q4_k_m.gguf"):
        info = run_cli("model", "info", str(out / file), "--json")
        assert info.returncode == 0, info.stderr
        card = json.loads(info.stdout)
        assert card["license"] == ("cc-by-nc-sa-4.0 · CC BY-NC-SA 4.0 · "
                                   "https://creativecommons.org/licenses/by-nc-sa/4.0/"), file
        assert card["usage_warning"] == WARNING, file
        assert card["name"] == "JMedLLM-v1-7B"
        fields = general_fields(out / file)
        assert fields["general.description"] == WARNING
        assert fields["general.languages"] == ["ja", "en"] and fields["general.tags"] == ["medical"]
        assert fields["general.base_model.0.repo_url"] == "https://huggingface.co/Qwen/Qwen2-7B-Instruct"
    manifest = json.loads((out / "manifest.json").read_text())
    assert "README.md" in manifest["inputs"]["base"]["files"]
    model_card = (out / "MODEL_CARD.md").read_text()
    assert "Licence (from the checkpoint's README.md): cc-by-nc-sa-4.0 · CC BY-NC-SA 4.0" in model_card
    assert f"> {WARNING}" in model_card


def meta_fields(path: Path, metadata: gguf.Metadata | None, name: str, ours: bool = True) -> dict[str, object]:
    """The general.* keys a writer gets from our ``add_model_metadata`` (or gguf-py's own call)."""
    writer = gguf.GGUFWriter(path, "qwen2")
    if ours:
        add_model_metadata(writer, metadata, name)
    else:
        assert metadata is not None
        metadata.set_gguf_meta_model(writer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    return general_fields(path)


def test_readme_keys_are_llama_cpps_own(tmp_path: Path, tiny_dir: Path) -> None:
    """Every key gguf-py's Metadata.load + set_gguf_meta_model (what convert_hf_to_gguf.py runs) takes from
    the README has the same value with us; ours adds only general.description, from the body."""
    base_dir = with_readme(tiny_dir, tmp_path / "checkpoint", JMEDLLM_CARD)
    base = open_base(base_dir)
    ours = meta_fields(tmp_path / "ours.gguf", base.readme, "JMedLLM")
    llama_cpp = gguf.Metadata.load(None, base_dir, None, base.n_params())
    llama_cpp.name = llama_cpp.name or base_dir.name
    reference = meta_fields(tmp_path / "reference.gguf", llama_cpp, "", ours=False)
    reference = {k: v for k, v in reference.items() if k not in NOT_FROM_README}
    assert {"general.license", "general.license.name", "general.license.link", "general.languages",
            "general.tags", "general.base_model.count"} <= set(reference)
    assert {k: ours.get(k) for k in reference} == reference
    assert set(ours) - set(reference) == {"general.name", "general.description"}
    assert ours["general.name"] == "JMedLLM" and ours["general.description"] == WARNING


def test_without_readme_the_bytes_are_as_before(tmp_path: Path, tiny_dir: Path) -> None:
    """No README.md: only general.name is written, byte for byte what the exporter wrote before."""
    assert open_base(tiny_dir).readme is None
    meta_fields(tmp_path / "now.gguf", None, "JMedLLM")
    writer = gguf.GGUFWriter(tmp_path / "before.gguf", "qwen2")
    writer.add_name("JMedLLM")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    assert (tmp_path / "now.gguf").read_bytes() == (tmp_path / "before.gguf").read_bytes()


def test_usage_sentences_from_markdown() -> None:
    body = ("# Model\n\nThis model is **under development** and\nnot for medical use. It is fast.\n\n"
            "- Research only\n- <b>本モデルは開発中です。</b>医療目的での使用はできません。詳しくは論文へ。\n")
    assert usage_sentences(body) == ["This model is under development and not for medical use.", "Research only",
                                     "本モデルは開発中です。", "医療目的での使用はできません。"]
    assert usage_sentences("A helpful assistant for clinicians.") == []


def test_front_matter_description_is_kept_and_warning_appended(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(
        "---\nlicense: [mit, apache-2.0]\ndescription: A Japanese medical model.\nversion: 1.0\n---\n"
        "Not intended for clinical use.\n", encoding="utf-8")
    metadata = read_readme(tmp_path, 0)
    assert metadata is not None
    assert metadata.description == "A Japanese medical model.\n\nNot intended for clinical use."
    assert metadata.license == ["mit", "apache-2.0"] and metadata.version == "1.0"


def alias_bomb(levels: int = 12) -> bytes:
    """YAML of a few hundred bytes whose base_model is a tree of 10**levels leaves."""
    lines = ["---", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join([*lines, f"base_model: *a{levels - 1}", "---", ""]).encode()


@pytest.mark.parametrize(("content", "expected"), [
    (b"---\nlicense: [unclosed\n---\n", "is not valid YAML"),
    (b"---\nlicense: {name: x}\n---\n", "front matter field 'license' must be text"),
    (b"---\ntags: [[a, b]]\n---\n", "front matter field 'tags' must be text"),
    (alias_bomb(), "front matter field 'base_model' must be text"),
    (b"\xff\xfe not utf-8", "is not UTF-8 text"),
    (b"x" * (MAX_README_BYTES + 1), "over the 1 MiB"),
])
def test_bad_readme_is_refused_before_any_output(tmp_path: Path, tiny_dir: Path, content: bytes,
                                                 expected: str) -> None:
    base = with_readme(tiny_dir, tmp_path / "checkpoint", "")
    (base / "README.md").write_bytes(content)
    with pytest.raises(ConvertError, match=expected):
        read_readme(base, 0)
    out = tmp_path / "out"
    assert_clean_error(run_cli("convert", "build", "--base", str(base), "--out", str(out), "--no-verify"),
                       expected)
    assert not out.exists()
