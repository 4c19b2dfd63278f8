"""Files a user hands the web UI, through the UI's own endpoints on an in-process server (gradio_client):
the Benchmark tab's import takes any file and lets the importer say what it is, and a model that cannot
be loaded (or a context length out of range) is refused in both languages and logged, its name shown as
text in Gradio's error toast (which renders HTML).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app.audit import FAILED, recent_loads
from app.ui.state import AppState, ServeOptions
from tests.conftest import app_in_thread, free_port
from tests.hostile_gguf import write_gguf
from tests.scripted_engine import ScriptedEngine

CSV = "id,question,choice_a,choice_b,answer\nq1,発熱の原因は？,感染,外傷,a\n"
HOSTILE = "<img src=x onerror=alert(1)>.gguf"  # a valid file name: no slash


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """The UI in this process (the local user is its administrator), with its own data and models folders."""
    monkeypatch.setenv("JMEDLLM_DATA_DIR", str(tmp_path / "appdata"))
    monkeypatch.setenv("JMEDLLM_MODELS_DIR", str(tmp_path / "models"))
    state = AppState(ScriptedEngine(lambda _prompt: "a"), ServeOptions(port=free_port(), db_path=tmp_path / "ui.db"))
    with app_in_thread(state) as (url, _):
        yield Client(url, verbose=False)


def tar_gz(path: Path) -> Path:
    """A question set packed as .tar.gz, as a Linux user might carry it over."""
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("bank.csv")
        info.size = len(CSV.encode())
        archive.addfile(info, io.BytesIO(CSV.encode()))
    return path


def test_a_file_of_another_type_is_refused_by_the_importer_saying_what_to_do(client: Client, tmp_path: Path) -> None:
    pdf = tmp_path / "questions.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj<<>>endobj\n")
    for upload, told in ((tar_gz(tmp_path / "bank.tar.gz"), "only zip archives are imported. Unpack it first"),
                         (pdf, "questions.pdf: no question set in a known layout")):
        *_, message = client.predict(handle_file(upload), "", False, "igakuqa", "quick", ["ja"],
                                     api_name="/bench_data_add")  # Gradio's own type check refused both
        shown = message.replace("\\", "")  # Markdown escapes dropped
        assert "Not imported (nothing was written)" in shown and told in shown, message
    assert not any((tmp_path / "appdata" / "benchmarks").iterdir())  # nothing half-written


def test_a_model_that_cannot_load_is_refused_in_both_languages_its_name_as_text(client: Client,
                                                                                tmp_path: Path) -> None:
    (tmp_path / "models" / HOSTILE).write_bytes(b"%PDF-1.4\n")  # listed (a .gguf name), not a GGUF
    for name, told in ((HOSTILE, "is not a GGUF model"), ("<b>typed</b>", "is not a GGUF file name")):
        with pytest.raises(AppError) as refused:
            client.predict(name, "0", 1024, api_name="/load_model")
        message = str(refused.value)
        assert "モデルを読み込めませんでした" in message and "Model not loaded" in message and told in message
        assert "<" not in message and "&lt;" in message, message  # shown as typed, not as an image or bold


@pytest.mark.parametrize("context", [100, 200_000])
def test_a_context_length_out_of_range_is_refused_in_both_languages_and_logged(client: Client, tmp_path: Path,
                                                                              context: int) -> None:
    write_gguf(tmp_path / "models" / "tiny.gguf")
    with pytest.raises(AppError) as refused:  # Gradio's own bounds: English only, a traceback, no log line
        client.predict("tiny.gguf", "0", context, api_name="/load_model")
    message = str(refused.value)
    assert "コンテキスト長は 256〜131,072 トークン" in message and "must be 256 to 131,072 tokens" in message, message
    last = recent_loads(tmp_path / "ui.db")[0]
    assert (last["file_name"], last["outcome"]) == ("tiny.gguf", FAILED)


def test_a_set_imported_twice_is_explained_with_the_pages_own_controls(client: Client, tmp_path: Path) -> None:
    bank = tmp_path / "bank.csv"
    bank.write_text(CSV, encoding="utf-8")
    messages = [client.predict(handle_file(bank), "", replace, "igakuqa", "quick", ["ja"],
                               api_name="/bench_data_add")[-1].replace("\\", "") for replace in (False, False, True)]
    assert "Imported: " in messages[0] and "Imported: " in messages[2], messages
    assert "A set called bank is already imported: tick" in messages[1], messages[1]
    assert "--replace" not in messages[1] and "--name" not in messages[1]  # the CLI's options mean nothing here
