"""``convert build`` and its --out folder: an earlier build needs --overwrite, foreign files and a missing
parent are refused, all before any model is read; so is a --save-merged (or ``convert merge --out``)
folder that is not new or empty, or whose parent is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from model_tools.build import check_out_dir
from model_tools.checkpoint import ConvertError
from model_tools.cli import convert
from tests.conftest import run_cli

EARLIER_BUILD = {"M-f16.gguf": "GGUF old", "M-q4_k_m.gguf": "GGUF old q4", "manifest.json": "{}",
                 "MODEL_CARD.md": "# M", "verification.json": '{"passed": true}'}
FAILED_BUILD = {"manifest.json": "{}", "MODEL_CARD.md": "# M", "verification.json": '{"passed": false}'}


def folder_with(path: Path, files: dict[str, str]) -> Path:
    path.mkdir()
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder`` with its content and mtime."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


def refused(out: Path, *options: str) -> str:
    """The one-line error of ``convert build`` into ``out`` with a --base that is no model (so a check of
    --out must come before the base is read)."""
    result = CliRunner().invoke(convert, ["build", "--base", str(out.parent / "no-model"), "--out", str(out),
                                          "--no-verify", *options])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    return result.output


@pytest.mark.parametrize("earlier", [EARLIER_BUILD, FAILED_BUILD], ids=["passed", "failed verification"])
def test_an_earlier_build_is_refused_without_overwrite(tmp_path: Path, earlier: dict[str, str]) -> None:
    out = folder_with(tmp_path / "out", earlier)
    before = snapshot(out)
    assert f"--out {out} holds an earlier build; pass --overwrite to replace it, or choose another folder" in \
        refused(out, "--save-merged", str(tmp_path / "merged"))
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == sorted(earlier)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("files", [
    {"notes.docx": "someone's"},
    {"someone.gguf": "GGUF"},  # a GGUF without a build's manifest beside it
    {**EARLIER_BUILD, "notes.docx": "someone's"},
], ids=["document", "lone gguf", "document beside a build"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_foreign_files_are_refused_even_with_overwrite(tmp_path: Path, files: dict[str, str],
                                                       overwrite: bool) -> None:
    out = folder_with(tmp_path / "out", files)
    before = snapshot(out)
    with pytest.raises(ConvertError, match=r"holds files that are not from a build: (notes\.docx|someone\.gguf); "
                                           r"choose an empty or new folder"):
        check_out_dir(out, overwrite)
    assert snapshot(out) == before


def test_foreign_files_give_a_clean_cli_error(tmp_path: Path) -> None:
    out = folder_with(tmp_path / "out", {"notes.docx": "someone's"})
    assert f"--out {out} holds files that are not from a build: notes.docx" in refused(out, "--overwrite")


def test_a_missing_parent_is_refused_and_not_created(tmp_path: Path) -> None:
    out = tmp_path / "typo" / "out"
    assert f"cannot create --out {out}: the folder {tmp_path / 'typo'} does not exist" in refused(out)
    assert list(tmp_path.iterdir()) == []


def test_save_merged_into_a_missing_parent_or_a_full_folder_is_refused_first(tmp_path: Path) -> None:
    typo = tmp_path / "typo" / "merged"
    message = refused(tmp_path / "out", "--save-merged", str(typo))
    assert f"cannot create output folder {typo}: the folder {tmp_path / 'typo'} does not exist" in message
    full = folder_with(tmp_path / "merged", {"model.safetensors": "someone's"})
    assert f"output folder {full} exists and is not empty" in refused(tmp_path / "out", "--save-merged", str(full))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]  # nothing created, not even --out


def test_merge_into_a_missing_parent_is_refused_and_not_created(tmp_path: Path, tiny_dir: Path,
                                                                tiny_adapter: Path) -> None:
    out = tmp_path / "typo" / "merged"
    result = CliRunner().invoke(convert, ["merge", "--base", str(tiny_dir), "--adapter", str(tiny_adapter),
                                          "--out", str(out)])
    assert result.exit_code == 1 and "the folder" in result.output and "does not exist" in result.output
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("setup", ["missing", "empty", "stale staging folder"])
def test_a_new_or_empty_out_passes_the_check(tmp_path: Path, setup: str) -> None:
    """Only then is the base read (here: none, so that is the error); a stale staging folder is kept."""
    out = tmp_path / "out"
    if setup != "missing":
        out.mkdir()
    if setup == "stale staging folder":
        folder_with(out / ".build-killed", {".M-f16.gguf.partial": "GG"})
    check_out_dir(out, overwrite=False)
    assert "base checkpoint folder not found" in refused(out)
    if setup == "missing":
        assert not out.exists()
    else:
        stale = [".M-f16.gguf.partial", ".build-killed"] if setup == "stale staging folder" else []
        assert sorted(p.name for p in out.rglob("*")) == stale


def test_overwrite_accepts_an_earlier_build(tmp_path: Path) -> None:
    out = folder_with(tmp_path / "out", {**EARLIER_BUILD, "Other-q8_0.gguf": "GGUF of another --name"})
    check_out_dir(out, overwrite=True)


@pytest.mark.slow
def test_overwrite_replaces_an_earlier_build(tmp_path: Path, tiny_dir: Path) -> None:
    out = folder_with(tmp_path / "out", {"M-f16.gguf": "GGUF old", "manifest.json": "{}",
                                         "verification.json": '{"passed": false}'})
    result = run_cli("convert", "build", "--base", str(tiny_dir), "--out", str(out), "--quant", "Q8_0",
                     "--no-verify", "--name", "M", "--overwrite")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["M-f16.gguf", "M-q8_0.gguf", "MODEL_CARD.md", "manifest.json"]
    assert (out / "M-f16.gguf").read_bytes() != b"GGUF old" and (out / "manifest.json").read_text() != "{}"
