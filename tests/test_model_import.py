"""``jmedllm model import``: a checked, hashed, atomic copy into the models folder; licence and use notices."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import signal
import stat
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gguf
import numpy as np
import platformdirs
import pytest
from markdown_it import MarkdownIt

from app.demo_model import DEMO_SHA256
from app.engines.server_build import sdist_name
from app.hashing import cached_sha256
from app.model_card import read_model_card
from app.model_import import (
    DISK_MARGIN,
    LLAMA_CPP_ARCHITECTURES,
    LLAMA_CPP_PYTHON_VERSION,
    ModelImportError,
    check_free_space,
    import_model,
    model_file_name,
)
from app.models import list_models, resolve_model_name
from app.ui.cards import model_card_markdown
from tests.conftest import JMEDLLM, REPO_ROOT, assert_clean_error, run_cli, scratch_folder
from tests.scripted_engine import ScriptedEngine

NOTICE = "This model is under development, not for medical use. Weights converted from the checkpoint."


@pytest.fixture(autouse=True)
def models(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A models folder and a hash cache of the test's own (subprocesses inherit both), deleted after it."""
    with scratch_folder(tmp_path_factory, "models") as folder, scratch_folder(tmp_path_factory, "cache") as cache:
        monkeypatch.setenv("JMEDLLM_MODELS_DIR", str(folder))
        monkeypatch.setenv("JMEDLLM_CACHE_DIR", str(cache))
        yield folder


def small_gguf(path: Path, architecture: str = "llama", **general: str) -> Path:
    """A small GGUF written by gguf-py: ``architecture``, ``general.<key>`` strings, one 8x32 F32 tensor."""
    writer = gguf.GGUFWriter(path, arch=architecture)
    writer.add_name("small test model")
    writer.add_context_length(4096)
    for key, value in general.items():
        writer.add_string(f"general.{key}", value)
    writer.add_tensor("weight", np.arange(256, dtype=np.float32).reshape(8, 32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry of ``folder``, hidden ones included, with its size and mtime."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_imported_demo_is_usable_by_name_with_its_sha256_recorded(demo_model_path: Path, models: Path) -> None:
    result = run_cli("model", "import", str(demo_model_path), "--name", "jmed-demo")
    assert result.returncode == 0, result.stderr
    assert f"sha256: {DEMO_SHA256}" in result.stdout and "jmedllm serve --model jmed-demo.gguf" in result.stdout
    target = models / "jmed-demo.gguf"
    assert listing(models).keys() == {"jmed-demo.gguf"}  # no temporary file left beside it
    hashed: list[int] = []
    assert cached_sha256(target, lambda done, _: hashed.append(done)) == DEMO_SHA256
    assert not hashed, "the sha256 computed while copying was not recorded: the file was read again"
    info = run_cli("model", "info", "jmed-demo", "--json")  # NAME, as imported: .gguf may be left off
    assert info.returncode == 0, info.stderr
    card = json.loads(info.stdout)
    assert card["sha256"] == DEMO_SHA256 and card["path"] == str(target.resolve())
    assert card["license"] == "not stated in the file" and card["usage_warning"] == ""
    assert list_models() == [target] and resolve_model_name("jmed-demo.gguf") == target  # the UI's picker
    again = run_cli("model", "import", str(demo_model_path), "--name", "demo-copy")
    assert_clean_error(again, "is already in the models folder as jmed-demo.gguf",
                       "jmedllm serve --model jmed-demo.gguf", "Nothing was copied.")
    assert listing(models).keys() == {"jmed-demo.gguf"}


def test_the_same_bytes_are_refused_under_another_name_but_not_a_file_of_the_same_size(tmp_path: Path,
                                                                                       models: Path) -> None:
    source = small_gguf(tmp_path / "jmed-a.gguf")
    import_model(source)
    with pytest.raises(ModelImportError, match="already in the models folder as jmed-a.gguf"):
        import_model(source, name="jmed-b")
    assert import_model(source, replace=True).replaced  # the same name, replaced: not a second copy
    other = tmp_path / "jmed-other.gguf"
    other.write_bytes(source.read_bytes()[:-1] + b"\x01")  # the same size, another last byte
    assert import_model(other).path.name == "jmed-other.gguf"
    assert sorted(listing(models)) == ["jmed-a.gguf", "jmed-other.gguf"]


def _safetensors(path: Path) -> Path:
    header = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(8))
    return path


def _nonesuch(path: Path) -> Path:
    return small_gguf(path, architecture="nonesuch")


@pytest.mark.parametrize(("make", "expected"), [
    (lambda p: p.write_text("# notes, renamed .gguf\n") and p, "does not start with the GGUF magic bytes"),
    (_safetensors, "it is a safetensors file"),
    (lambda p: p.write_bytes(b"\x80\x04\x95" + bytes(40)) and p, "it is a Python pickle"),
    (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(40)) and p, "it is a zip archive"),
    (_nonesuch, "is a 'nonesuch' model, an architecture the llama.cpp of this app"),
])
def test_what_is_not_a_runnable_gguf_is_refused_and_nothing_written(tmp_path: Path, models: Path,
                                                                     make: Callable[[Path], Path],
                                                                     expected: str) -> None:
    source = make(tmp_path / "model.gguf")
    result = run_cli("model", "import", str(source))
    assert_clean_error(result, expected)
    assert listing(models) == {}


def test_a_truncated_gguf_is_refused(tmp_path: Path, models: Path, demo_model_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with demo_model_path.open("rb") as handle:
        cut.write_bytes(handle.read(1024))
    assert_clean_error(run_cli("model", "import", str(cut)), "not a complete, well-formed GGUF", "truncated")
    whole = small_gguf(tmp_path / "whole.gguf")
    cut.write_bytes(whole.read_bytes()[:-4])  # the header is whole, the tensor data is not
    with pytest.raises(ModelImportError, match="tensor #0 declares 1,024 bytes"):
        import_model(cut)
    assert listing(models) == {}


def test_a_taken_name_is_refused_unless_replace(tmp_path: Path, models: Path) -> None:
    first = small_gguf(tmp_path / "first.gguf")
    second = small_gguf(tmp_path / "second.gguf", license="apache-2.0")
    imported = import_model(first, "model")
    assert imported.path == models / "model.gguf" and not imported.replaced and imported.architecture == "llama"
    before = listing(models)
    assert_clean_error(run_cli("model", "import", str(second), "--name", "model.gguf"),
                       "A model named model.gguf is already in", "--replace")
    assert listing(models) == before
    result = run_cli("model", "import", str(second), "--name", "model", "--replace")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Replaced model.gguf") and "license: apache-2.0" in result.stdout
    assert (models / "model.gguf").read_bytes() == second.read_bytes()
    assert listing(models).keys() == {"model.gguf"}


def test_an_imported_model_is_readable_only_by_its_owner(tmp_path: Path, models: Path) -> None:
    source = small_gguf(tmp_path / "model.gguf")
    umask = os.umask(0o022)  # permissive, so the mode checked comes from the app, not the environment
    try:
        result = run_cli("model", "import", str(source))
    finally:
        os.umask(umask)
    assert result.returncode == 0 and result.stdout.startswith("Imported model.gguf"), result.stderr
    target = models / "model.gguf"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    target.chmod(0o644)  # as imported by 0.5.2 and earlier: a replacement is private all the same
    import_model(source, "model", replace=True)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["../model", "sub/model", ".hidden", "demo", "demo.gguf", "a\x1b[31m", "x" * 300, ""])
def test_names_that_are_not_plain_file_names_are_refused(name: str) -> None:
    with pytest.raises(ModelImportError):
        model_file_name(name)
    assert model_file_name("jmedllm-7b-v1.Q4_K_M") == "jmedllm-7b-v1.Q4_K_M.gguf"
    assert model_file_name("x.gguf") == "x.gguf"


def test_a_models_folder_that_cannot_be_made_is_a_clear_error(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A file where the models folder should be: import says so and info NAME looks there, no traceback."""
    blocked = tmp_path / "models"
    blocked.write_text("not a folder")
    monkeypatch.setenv("JMEDLLM_MODELS_DIR", str(blocked))
    source = small_gguf(tmp_path / "jmed-x.gguf")
    assert_clean_error(run_cli("model", "import", str(source)),
                       f"Cannot use the folder {blocked}: it is a file, not a folder. This folder comes from "
                       "$JMEDLLM_MODELS_DIR", "Nothing was written.")
    assert_clean_error(run_cli("model", "info", "jmed-x"), "Model file not found: jmed-x")
    assert blocked.read_text() == "not a folder"
    missing = tmp_path / "no-models-yet"
    monkeypatch.setenv("JMEDLLM_MODELS_DIR", str(missing))
    assert_clean_error(run_cli("model", "info", "jmed-x"), "Model file not found: jmed-x")
    assert not missing.exists()  # looking a model up creates no folder


def test_too_little_free_disk_is_refused_before_copying(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    check_free_space(tmp_path, 1024)
    with pytest.raises(ModelImportError, match="Not enough free disk space"):
        check_free_space(tmp_path, free - DISK_MARGIN + 2**30)  # other writers: 1 GiB of slack


def test_an_interrupted_copy_leaves_nothing(demo_model_path: Path, models: Path) -> None:
    process = subprocess.Popen([*JMEDLLM, "model", "import", str(demo_model_path)], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not any(p.name.endswith(".partial") for p in models.iterdir()):
            assert process.poll() is None and time.monotonic() < deadline, "no copy in progress was seen"
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:  # a failed check above leaves no copy running
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0 and "Traceback" not in stderr, stderr
    assert listing(models) == {}


def test_licence_and_not_for_medical_use_are_shown(tmp_path: Path) -> None:
    path = small_gguf(tmp_path / "jmed.gguf", license="cc-by-nc-sa-4.0", description=NOTICE,
                      **{"license.link": "https://creativecommons.org/licenses/by-nc-sa/4.0/"})
    info = run_cli("model", "info", str(path))
    assert info.returncode == 0, info.stderr
    assert "license: cc-by-nc-sa-4.0 · https://creativecommons.org/licenses/by-nc-sa/4.0/" in info.stdout
    assert "usage_warning: This model is under development, not for medical use." in info.stdout
    markdown = model_card_markdown(ScriptedEngine(lambda _: "", card=read_model_card(path)))
    html = MarkdownIt("commonmark", {"html": True}).render(markdown)
    assert "license / ライセンス: cc-by-nc-sa-4.0 · https://creativecommons.org/licenses/by-nc-sa/4.0/" in html
    assert "⚠️ the model's own notice / モデル自身の注意書き: " + NOTICE.split(" Weights")[0] in html
    assert "<a " not in html  # the link is text, never a live link
    assert "Weights converted" not in markdown  # only the sentence that restricts use


@pytest.mark.parametrize(("text", "shown"), [
    ("研究用のモデルです。医療目的での使用はできません。", "医療目的での使用はできません"),
    ("Intended for research purposes only", "Intended for research purposes only"),
    ("It should NOT be used for clinical decisions.", "It should NOT be used for clinical decisions."),
    ("<b>Not intended for clinical use</b> <img src=x>", "<b>Not intended for clinical use</b> <img src=x>"),
    ("A general-purpose Japanese model.", ""),
])
def test_use_notices_are_found_in_english_and_japanese(tmp_path: Path, text: str, shown: str) -> None:
    card = read_model_card(small_gguf(tmp_path / "m.gguf", description=text))
    assert card.usage_warning == shown and card.license == ""
    markdown = model_card_markdown(ScriptedEngine(lambda _: "", card=card))
    assert "<b>" not in markdown and "<img" not in markdown


def test_a_long_notice_keeps_its_phrase_in_view(tmp_path: Path) -> None:
    text = "x " * 500 + "not for medical use " + "y " * 500
    card = read_model_card(small_gguf(tmp_path / "m.gguf", description=text))
    assert "not for medical use" in card.usage_warning and len(card.usage_warning) <= 202


def test_the_architecture_list_is_the_pinned_llama_cpps() -> None:
    """The list belongs to one llama-cpp-python version; with its sdist at hand, it is that sdist's list."""
    installed = importlib.metadata.version("llama-cpp-python")
    assert installed == LLAMA_CPP_PYTHON_VERSION, (
        f"llama-cpp-python is now {installed}: take LLAMA_CPP_ARCHITECTURES again from its src/llama-arch.cpp")
    assert {"qwen2", "llama", "qwen3", "gemma3"} <= LLAMA_CPP_ARCHITECTURES
    sdist = Path(os.environ.get("JMEDLLM_LLAMA_CPP_SDIST")
                 or Path(platformdirs.user_cache_dir("jmedllm")) / "llama-server" / "sdist" / sdist_name(installed))
    if not sdist.is_file():
        pytest.skip(f"the llama-cpp-python sdist is not at {sdist}")
    member = f"llama_cpp_python-{installed}/vendor/llama.cpp/src/llama-arch.cpp"
    with tarfile.open(sdist, "r:gz") as archive, archive.extractfile(member) as handle:  # type: ignore[union-attr]
        source = handle.read().decode()
    table = re.search(r"LLM_ARCH_NAMES = \{(.*?)\n\};", source, re.DOTALL)
    assert table is not None
    names = set(re.findall(r'\{\s*LLM_ARCH_\w+,\s*"([^"]+)"\s*\}', table.group(1))) - {"clip", "(unknown)"}
    assert names == LLAMA_CPP_ARCHITECTURES


def test_a_cache_folder_that_cannot_be_written_only_costs_time(tmp_path: Path, demo_model_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("where the cache folder should be")
    monkeypatch.setenv("JMEDLLM_CACHE_DIR", str(blocked / "cache"))
    result = run_cli("model", "info", str(demo_model_path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sha256"] == DEMO_SHA256
    assert "Traceback" not in result.stderr and "sha256 cache not saved" in result.stderr
