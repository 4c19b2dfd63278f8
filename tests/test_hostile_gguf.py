"""Hostile GGUF metadata is contained: bounded reading, escaped display, refused context lengths."""

from __future__ import annotations

import html
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
from gguf import GGMLQuantizationType, GGUFValueType
from markdown_it import MarkdownIt

from app.engines.local import LocalEngine
from app.gguf_metadata import MAX_METADATA_BYTES, printable, read_gguf_metadata
from app.model_card import ModelFileError, read_model_card
from app.ui.cards import escape_markdown, model_card_markdown
from tests.conftest import REPO_ROOT, run_cli, start_server, stop_server
from tests.hostile_gguf import (
    declared_array_gguf,
    gguf_string,
    header,
    hostile_copy_of,
    kv,
    u32,
    u64,
    write_gguf,
)
from tests.scripted_engine import ScriptedEngine
from tests.test_browser import CHROMIUM_FLAGS, chromium_path

IMG_NAME = "<img src=http://127.0.0.1:9/x>"
ESC_NAME = "\x1b[31mred\x1b]0;retitled\x07 \x9b2J"
MARKDOWN_NAME = "![x](http://127.0.0.1:9/y) [link](http://127.0.0.1:9/z) *em* `code` $$x$$"

MEASURE = """
import json, resource, sys, time
from pathlib import Path
from app.model_card import ModelFileError, read_model_card
results = []
for name in sys.argv[1:]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        read_model_card(Path(name))
        message = "no error"
    except ModelFileError as exc:
        message = str(exc)
    results.append({"message": message, "seconds": time.perf_counter() - start,
                    "grown_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before})
print(json.dumps(results))
"""


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hashes of the crafted files go to a cache of the tests' own (subprocesses inherit it)."""
    monkeypatch.setenv("JMEDLLM_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.mark.parametrize("count", [2**20, 2**22, 2**40])
def test_a_declared_huge_array_fails_fast_without_allocating(tmp_path: Path, count: int) -> None:
    paths = []
    for element in (GGUFValueType.STRING, GGUFValueType.UINT32, GGUFValueType.ARRAY):
        path = tmp_path / f"array-{element.name}.gguf"
        path.write_bytes(declared_array_gguf(count, element))
        assert path.stat().st_size < 100
        paths.append(str(path))
    result = subprocess.run([sys.executable, "-c", MEASURE, *paths], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=60, check=True)
    for outcome in json.loads(result.stdout):
        assert "is not a readable GGUF file: array element count of " f"{count:,}" in outcome["message"]
        assert "the file has only" in outcome["message"]
        assert outcome["seconds"] < 1
        assert outcome["grown_kib"] < 8 * 1024, outcome  # peak memory grew by under 8 MiB


def test_every_truncation_of_a_valid_file_is_a_clear_error(tmp_path: Path) -> None:
    whole = write_gguf(tmp_path / "whole.gguf", array_len=5, chat_template="{{ messages }}").read_bytes()
    assert read_model_card(tmp_path / "whole.gguf").parameters == 256
    cut = tmp_path / "cut.gguf"
    for size in range(len(whole)):
        cut.write_bytes(whole[:size])
        with pytest.raises(ModelFileError, match="not a (readable )?GGUF"):
            read_model_card(cut)


ARCH = kv("general.architecture", "llama")
F32 = u32(GGMLQuantizationType.F32)
MALFORMED = {
    "string length past EOF": (
        header(0, 1) + gguf_string("general.name") + u32(GGUFValueType.STRING) + u64(1000) + b"short",
        "needs 1,000 bytes but the file has only 5 left"),
    "string over the cap": (
        header(0, 1) + gguf_string("general.name") + u32(GGUFValueType.STRING) + u64(2**40) + b"x" * 64,
        "declares 1,099,511,627,776 bytes, over the 1 MiB limit"),
    "kv count 2^60": (header(0, 2**60) + ARCH, f"key/value count of {2**60:,}"),
    "tensor count 2^60": (header(2**60, 1) + ARCH, f"tensor count of {2**60:,}"),
    "key past EOF": (header(0, 1) + u64(1000) + b"k" * 16, "key at byte 32 needs 1,000 bytes"),
    "unknown value type": (header(0, 1) + gguf_string("k") + u32(99) + u64(0), "value type at byte 33 is unknown (99)"),
    "arrays nested 3 deep": (
        header(0, 1) + gguf_string("k") + u32(GGUFValueType.ARRAY) + (u32(GGUFValueType.ARRAY) + u64(1)) * 3
        + b"\0" * 64,
        "arrays nested more than 2 deep"),
    "duplicate key": (header(0, 2) + ARCH + ARCH, "duplicate key"),
    "version 1": (b"GGUF" + u32(1) + u64(0) + u64(0), "GGUF version 1 is not supported"),
    "big-endian": (b"GGUF\0\0\0\3" + u64(0) + u64(0),
                   "GGUF version 50331648 is not supported"),
    "five dimensions": (header(1, 1) + ARCH + gguf_string("w") + u32(5) + u64(1) * 5 + F32 + u64(0),
                        "declares 5 dimensions"),
    "unknown tensor type": (header(1, 1) + ARCH + gguf_string("w") + u32(1) + u64(32) + u32(999) + u64(0),
                            "unknown type 999"),
    "tensor data past EOF": (
        header(1, 1) + ARCH + gguf_string("w") + u32(2) + u64(2**40) + u64(2**40) + F32 + u64(0) + b"\0" * 64,
        f"tensor #0 declares {4 * 2**80:,} bytes of data"),
    "bad alignment": (header(0, 1) + kv("general.alignment", 3), "general.alignment 3 is not a power of two"),
    "header shorter than 24 bytes": (b"GGUF" + u32(3) + u64(0), "shorter than a GGUF header"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_headers_are_clear_errors(tmp_path: Path, case: str) -> None:
    data, expected = MALFORMED[case]
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match="bad.gguf is not a readable GGUF file: ") as caught:
        read_model_card(path)
    assert expected in str(caught.value)
    assert time.perf_counter() - start < 1


def test_metadata_beyond_the_cap_is_refused(tmp_path: Path) -> None:
    size = MAX_METADATA_BYTES + 2**20
    path = tmp_path / "fat.gguf"
    with path.open("wb") as out:
        out.write(header(0, 1) + gguf_string("tokenizer.ggml.token_type") + u32(GGUFValueType.ARRAY)
                  + u32(GGUFValueType.UINT8) + u64(size))
        out.truncate(out.tell() + size)
    with pytest.raises(ModelFileError, match="past the 64 MiB limit"):
        read_model_card(path)


def test_well_formed_metadata_is_read_and_arrays_are_skipped(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "tiny.gguf", name="小さなモデル", array_len=20_000, chat_template="{{ x }}")
    metadata = read_gguf_metadata(path)
    assert "tokenizer.ggml.tokens" not in metadata.values  # skipped, never materialised
    card = read_model_card(path)
    assert (card.name, card.architecture, card.context_length) == ("小さなモデル", "llama", 4096)
    assert (card.parameters, card.quantization, card.chat_template) == (256, "F32", "{{ x }}")
    assert read_model_card(write_gguf(tmp_path / "f16.gguf", file_type=1)).quantization == "F16"


def test_absurd_context_length_is_refused_at_load(tmp_path: Path) -> None:
    limit = write_gguf(tmp_path / "limit.gguf", context_length=2**31 - 1)
    assert read_model_card(limit).context_length == 2**31 - 1
    for bad in (2**31, 2**32 + 5):
        path = write_gguf(tmp_path / f"ctx{bad}.gguf", context_length=bad)
        with pytest.raises(ModelFileError, match=f"context length of {bad:,} tokens"):
            read_model_card(path)
        with pytest.raises(ModelFileError, match="context length"):
            LocalEngine.load(path, n_gpu_layers=0)  # refused before llama.cpp sees the file
    text = write_gguf(tmp_path / "text.gguf", context_length="many")
    with pytest.raises(ModelFileError, match="context length of a str, not a whole number"):
        read_model_card(text)


def rendered(markdown: str) -> str:
    """The HTML a CommonMark renderer that passes HTML through (as Gradio's does) makes of ``markdown``."""
    return MarkdownIt("commonmark", {"html": True}).render(markdown)


@pytest.mark.parametrize("name", [IMG_NAME, ESC_NAME, MARKDOWN_NAME])
def test_ui_card_shows_metadata_as_text(tmp_path: Path, name: str) -> None:
    path = write_gguf(tmp_path / f"{IMG_NAME[:4]}.gguf", name=name, architecture="<b>arch</b>",
                      extra=(kv("general.size_label", "<script>x</script>"), kv("general.file_type", 999)))
    markdown = model_card_markdown(ScriptedEngine(lambda _: "", card=read_model_card(path)))
    html = rendered(markdown)
    for forbidden in ("<img", "<a ", "<b>", "<script", "\x1b", "\x9b", "\x07"):
        assert forbidden not in markdown
        assert forbidden not in html
    assert "<em>" not in html and html.count("<code>") == 1  # only the sha256 is code
    assert html.count("<strong>") == 2 and html.count("<li>") == 5  # the card's own formatting still works


@pytest.mark.parametrize("text", [IMG_NAME, ESC_NAME, MARKDOWN_NAME])
def test_licence_and_use_notice_are_shown_as_text(tmp_path: Path, text: str) -> None:
    path = write_gguf(tmp_path / "notice.gguf", extra=(kv("general.license", text),
                                                       kv("general.description", f"{text} not for medical use")))
    card = read_model_card(path)
    assert card.license == text and card.usage_warning == f"{text} not for medical use".strip()
    markdown = model_card_markdown(ScriptedEngine(lambda _: "", card=card))
    html = rendered(markdown)
    for forbidden in ("<img", "<a ", "<b>", "<script", "\x1b", "\x9b", "\x07"):
        assert forbidden not in markdown
        assert forbidden not in html
    assert "<em>" not in html and html.count("<li>") == 7  # the two lines are list items, nothing more
    table = run_cli("model", "info", str(path))
    assert table.returncode == 0, table.stderr
    assert not any(ch in table.stdout for ch in "\x1b\x9b\x07")
    assert f"license: {printable(text)}" in table.stdout


@pytest.mark.parametrize("text", [
    IMG_NAME, ESC_NAME, MARKDOWN_NAME, "Q4_K_M", "_em_ __init__ 日本_語_ a__b", "<!-- c --> &amp; &#60; \\*x\\*",
    "www.example.com http://127.0.0.1:9/ <http://127.0.0.1:9/>", "# h", "1. x", "> q", "    indented", "a\n\n<img>",
    "~~s~~ | a | b |", "Qwen2.5-Coder 0.5B",
])
def test_escaped_markdown_renders_as_the_literal_text(text: str) -> None:
    literal = html.escape(printable(text).strip(), quote=False).replace('"', "&quot;")
    assert rendered(escape_markdown(text)) == f"<p>{literal}</p>\n"
    assert escape_markdown("Q4_K_M") == "Q4_K_M"  # readable where nothing needs escaping


def test_cli_model_info_prints_no_control_characters(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "esc.gguf", name=ESC_NAME)
    table = run_cli("model", "info", str(path))
    assert table.returncode == 0, table.stderr
    assert not any(ch in table.stdout for ch in "\x1b\x9b\x07")
    assert f"name: {printable(ESC_NAME)}" in table.stdout
    as_json = run_cli("model", "info", str(path), "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert not any(ch in as_json.stdout for ch in "\x1b\x9b\x07")
    assert json.loads(as_json.stdout)["name"] == ESC_NAME  # escaped, not altered


def test_demo_card_reads_fast(demo_model_path: Path) -> None:
    read_model_card(demo_model_path)  # the sha256 is cached after this
    start = time.perf_counter()
    card = read_model_card(demo_model_path)
    assert card.quantization == "Q4_K_M" and card.context_length == 32768
    assert time.perf_counter() - start < 2  # gguf.GGUFReader took about 8.6 s on the same file


def test_ui_serves_a_hostile_model_card_escaped(tmp_path: Path, demo_model_path: Path, app_data_dir: Path) -> None:
    """A llama.cpp-loadable model named with an <img> tag: the real server's page carries the card escaped."""
    model = hostile_copy_of(demo_model_path, tmp_path / "hostile.gguf", name=IMG_NAME)
    server = start_server(["--model", str(model), "--ctx", "2048", "--gpu-layers", "0"],
                          tmp_path / "server.log", tmp_path / "ui.db")
    try:
        with urllib.request.urlopen(server.url + "config", timeout=30) as response:
            config = response.read().decode()
        requested = page_requests(server.url)
    finally:
        stop_server(server)
    assert "&lt;img src\\\\=http" in config  # the card, escaped, in the page's component values
    assert "<img" not in config and "\\u003cimg" not in config
    hosts = {urlparse(url).netloc for url in requested if urlparse(url).scheme in ("http", "https", "ws", "wss")}
    assert hosts == {f"127.0.0.1:{server.port}"}, f"the page with a hostile model contacted other hosts: {hosts}"


def page_requests(url: str) -> list[str]:
    """Every URL real Chromium requests while showing ``url`` with its model card."""
    from playwright.sync_api import sync_playwright

    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.on("request", lambda request: requested.append(request.url))
        page.goto(url, wait_until="load")
        page.wait_for_selector("#answered-by", timeout=60_000)
        page.wait_for_timeout(1_000)
        browser.close()
    return requested
