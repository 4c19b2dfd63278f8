"""Loading a model is an administrator's act, by name from the models folder, and logged; pages follow the model.

Fast tests: the name rule (``resolve_model_name``), the role rule (``AppState.may_load_models``) and
the ``model_loads`` log. Slow tests: real ``jmedllm serve`` processes driven by gradio_client, and
two Chromium pages, one loading a model while the other must show it within the refresh period.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from app.audit import LOADED, RECENT_LOADS, REFUSED, LoadAttempt, recent_loads, record_load
from app.db import connect
from app.demo_model import DEMO_SHA256
from app.models import ModelNameError, list_models, resolve_model_name
from app.security import Users
from app.ui.blocks import REFRESH_SECONDS
from app.ui.state import AppState, ServeOptions
from tests.conftest import Server, scratch_folder, start_server, stop_server
from tests.scripted_engine import ScriptedEngine

RENAMED = "renamed-demo.gguf"  # a hardlink of the demo: another file name, the demo's sha256
NOT_DEMO = "jmedllm-admin-test.gguf"  # a copy of the demo with another general.name: not the demo
NOT_DEMO_NAME = b"JMedLLM Admin Test 0.5B Instr X"
ADMIN, STAFF, PASSWORD = "root", "alice", "correct horse battery"


# --- the name rule ----------------------------------------------------------------------------------


@pytest.fixture
def models_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("JMEDLLM_MODELS_DIR", str(folder))
    return folder


def fake_gguf(path: Path) -> Path:
    path.write_bytes(b"GGUF" + bytes(64))
    return path


def test_a_name_in_the_models_folder_resolves_to_that_file(models_folder: Path) -> None:
    model = fake_gguf(models_folder / "jmedllm-v1-7b-q4_k_m.gguf")
    (models_folder / "inside-link.gguf").symlink_to(model.name)
    assert resolve_model_name(model.name) == model.resolve()
    assert resolve_model_name("inside-link.gguf") == models_folder.resolve() / "inside-link.gguf"


@pytest.mark.parametrize("name", [
    "", ".", "..", "../x.gguf", "/etc/passwd", "sub/x.gguf", "x.bin", "x.gguf\x00", "missing.gguf", "..\\x.gguf",
])
def test_anything_but_a_plain_gguf_name_is_refused(models_folder: Path, name: str) -> None:
    fake_gguf(models_folder.parent / "x.gguf")
    (models_folder / "sub").mkdir()
    fake_gguf(models_folder / "sub" / "x.gguf")
    fake_gguf(models_folder / "x.bin")
    with pytest.raises(ModelNameError, match="not a GGUF file name in the models folder"):
        resolve_model_name(name)


def test_absolute_paths_symlinks_out_and_non_regular_files_are_refused(models_folder: Path, tmp_path: Path) -> None:
    outside = fake_gguf(tmp_path / "outside.gguf")
    (models_folder / "escape.gguf").symlink_to(outside)
    (models_folder / "folder.gguf").mkdir()
    os.mkfifo(models_folder / "pipe.gguf")
    good = fake_gguf(models_folder / "good.gguf")
    for name in (str(outside), str(good), "escape.gguf", "folder.gguf", "pipe.gguf"):
        with pytest.raises(ModelNameError):
            resolve_model_name(name)
    assert [p.name for p in list_models()] == ["good.gguf"]


# --- the role rule ----------------------------------------------------------------------------------


def users() -> Users:
    return Users({}).with_account(ADMIN, PASSWORD, admin=True).with_account(STAFF, PASSWORD, admin=False)


def state(**options: object) -> AppState:
    return AppState(ScriptedEngine(str), ServeOptions(**options))  # type: ignore[arg-type]


def test_without_logins_only_a_loopback_server_lets_its_local_user_load() -> None:
    assert state(host="127.0.0.1").may_load_models(None)
    assert state(host="::1").may_load_models(None)
    assert not state(host="0.0.0.0").may_load_models(None)
    assert not state(host="192.168.1.20").may_load_models(None)


def test_with_logins_only_administrators_load_even_on_loopback() -> None:
    accounts = users()
    for host in ("127.0.0.1", "0.0.0.0"):
        app = state(host=host, users=accounts, admins=accounts.admins)
        assert app.may_load_models(ADMIN)
        assert not app.may_load_models(STAFF)
        assert not app.may_load_models(None)
    nobody = Users({}).with_account(STAFF, PASSWORD, admin=False)
    assert not state(host="0.0.0.0", users=nobody, admins=nobody.admins).may_load_models(STAFF)


def test_replacing_the_engine_counts_versions_and_remembers_who() -> None:
    app = state()
    first = app.loaded
    assert first.version == 0 and first.username is None
    later = app.replace_engine(ScriptedEngine(str), ADMIN, "127.0.0.1")
    assert (later.version, later.username, later.address) == (1, ADMIN, "127.0.0.1")
    assert app.loaded is later and app.engine is later.engine


# --- the log ----------------------------------------------------------------------------------------


def test_loads_are_logged_newest_first_and_the_migration_creates_the_table(tmp_path: Path) -> None:
    db_path = tmp_path / "audit.db"
    record_load(db_path, LoadAttempt(None, "127.0.0.1", "m.gguf", LOADED, sha256="ab" * 32, quantization="Q4_K_M"))
    record_load(db_path, LoadAttempt(STAFF, "10.0.0.2", "x" * 5000, REFUSED, "not an administrator"))
    rows = recent_loads(db_path)
    assert [r["outcome"] for r in rows] == [REFUSED, LOADED]
    assert rows[0]["username"] == STAFF and len(rows[0]["file_name"]) == 300
    assert rows[1]["sha256"] == "ab" * 32 and rows[1]["at"].endswith("+00:00")
    for n in range(RECENT_LOADS + 5):
        record_load(db_path, LoadAttempt(None, None, f"{n}.gguf", REFUSED))
    assert len(recent_loads(db_path)) == RECENT_LOADS
    with connect(db_path) as db:
        assert set(db["model_loads"].columns_dict) == {
            "id", "at", "username", "address", "file_name", "sha256", "quantization", "outcome", "message"}


# --- real servers -----------------------------------------------------------------------------------


def log_rows(db_path: Path) -> list[tuple]:
    with sqlite3.connect(db_path) as db:
        return db.execute(
            "select username, address, file_name, sha256, quantization, outcome, message from model_loads order by id"
        ).fetchall()


@pytest.fixture(scope="module")
def served_models(tmp_path_factory: pytest.TempPathFactory, demo_model_path: Path) -> Iterator[Path]:
    """A models folder with the demo under another name and a not-demo copy (another general.name)."""
    with scratch_folder(tmp_path_factory, "models") as folder:
        try:
            os.link(demo_model_path, folder / RENAMED)
        except OSError:  # another file system
            shutil.copyfile(demo_model_path, folder / RENAMED)
        copy = shutil.copyfile(demo_model_path, folder / NOT_DEMO)
        with copy.open("r+b") as handle:
            header = handle.read(1 << 20)
            at = header.index(b"general.name") + len(b"general.name") + 4 + 8  # value type u32, length u64
            assert header[at:at + len(NOT_DEMO_NAME)] == b"Qwen2.5 Coder 0.5B Instruct AWQ"
            handle.seek(at)
            handle.write(NOT_DEMO_NAME)
        yield folder


def serve_with_models(folder: Path, tmp: Path, app_data_dir: Path, *args: str) -> Server:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JMEDLLM_MODELS_DIR", str(folder))
        return start_server(["--model", "demo", "--ctx", "1024", "--gpu-layers", "0", *args],
                            tmp / "server.log", tmp / "admin.db")


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory, served_models: Path, app_data_dir: Path) -> Iterator[Server]:
    """Loopback, no login: the local user is the administrator."""
    server = serve_with_models(served_models, tmp_path_factory.mktemp("local-server"), app_data_dir)
    yield server
    stop_server(server)


@pytest.mark.slow
def test_local_user_loads_a_models_folder_file_by_name_and_it_is_logged(local_server: Server) -> None:
    client = Client(local_server.url, verbose=False)
    card, log = client.predict(RENAMED, "0", 1024, api_name="/load_model")
    assert DEMO_SHA256[:12] in card and "renamed" in card and "local user" in card
    assert log["data"][0][3] == RENAMED and log["data"][0][6] == LOADED
    assert log_rows(local_server.db_path)[-1] == (None, "127.0.0.1", RENAMED, DEMO_SHA256, "Q4_K_M", LOADED, "")
    _, _, answered_by, _ = client.predict("Hello?", "", "en", "auto", "0", 16, "default", False, api_name="/chat")
    assert "renamed" in answered_by
    client.predict("demo", "0", 1024, api_name="/load_model")


@pytest.mark.slow
def test_a_listed_name_with_spaces_loads_as_listed(local_server: Server, served_models: Path) -> None:
    spaced = " spaced demo .gguf"  # a valid file name, offered as is by the picker
    os.link(served_models / RENAMED, served_models / spaced)
    client = Client(local_server.url, verbose=False)
    try:
        card, _ = client.predict(spaced, "0", 1024, api_name="/load_model")
        assert "spaced demo" in card
        assert log_rows(local_server.db_path)[-1][2:6] == (spaced, DEMO_SHA256, "Q4_K_M", LOADED)
        _, _, answered_by, _ = client.predict("Hello?", "", "en", "auto", "0", 16, "default", False,
                                              api_name="/chat")
        assert "spaced demo" in answered_by
    finally:
        client.predict("demo", "0", 1024, api_name="/load_model")
        (served_models / spaced).unlink()


@pytest.mark.slow
def test_a_models_folder_that_cannot_be_made_leaves_the_server_running(tmp_path: Path, app_data_dir: Path) -> None:
    blocked = tmp_path / "models"
    blocked.write_text("not a folder")
    server = serve_with_models(blocked, tmp_path, app_data_dir)  # it stopped with a traceback at start
    try:
        client = Client(server.url, verbose=False)
        with pytest.raises(Exception, match="not a GGUF file name in the models folder"):
            client.predict("x.gguf", "0", 1024, api_name="/load_model")
        _, _, answered_by, _ = client.predict("Hello?", "", "en", "auto", "0", 16, "default", False,
                                              api_name="/chat")
        assert DEMO_SHA256[:12] in answered_by
        assert blocked.read_text() == "not a folder"
    finally:
        stop_server(server)


@pytest.mark.slow
def test_paths_and_uploads_are_refused_and_logged(local_server: Server, demo_model_path: Path) -> None:
    client = Client(local_server.url, verbose=False)
    with demo_model_path.open("rb") as handle:  # a real GGUF, uploaded through Gradio's own route
        response = httpx.post(f"{local_server.url}gradio_api/upload",
                              files={"files": (NOT_DEMO, handle.read(1 << 20))}, timeout=60)
    response.raise_for_status()
    uploaded = response.json()[0]
    assert Path(uploaded).is_file()
    before = len(log_rows(local_server.db_path))
    refused = ["../x.gguf", "/etc/passwd", uploaded, str(demo_model_path), f"../{RENAMED}"]
    for name in refused:
        with pytest.raises(Exception, match="not a GGUF file name in the models folder"):
            client.predict(name, "0", 1024, api_name="/load_model")
    rows = log_rows(local_server.db_path)[before:]
    assert [(r[2], r[3], r[5]) for r in rows] == [(name, None, REFUSED) for name in refused]
    _, _, answered_by, _ = client.predict("Hello?", "", "en", "auto", "0", 16, "default", False, api_name="/chat")
    assert DEMO_SHA256[:12] in answered_by and "renamed" not in answered_by and "Admin Test" not in answered_by


@pytest.mark.slow
def test_with_logins_only_an_admin_loads(tmp_path_factory: pytest.TempPathFactory, served_models: Path,
                                         app_data_dir: Path) -> None:
    tmp = tmp_path_factory.mktemp("login-server")
    users_file = tmp / "users.txt"
    users_file.write_text(users().text())
    users_file.chmod(0o600)
    server = serve_with_models(served_models, tmp, app_data_dir, "--auth-file", str(users_file))
    try:
        staff = Client(server.url, auth=(STAFF, PASSWORD), verbose=False)
        with pytest.raises(Exception, match="Only an administrator may load models"):
            staff.predict(RENAMED, "0", 1024, api_name="/load_model")
        with pytest.raises(Exception, match="Only an administrator may load models"):
            staff.predict(api_name="/refresh_models")
        assert log_rows(server.db_path)[-1][:3] == (STAFF, "127.0.0.1", RENAMED)
        assert log_rows(server.db_path)[-1][5] == REFUSED
        admin = Client(server.url, auth=(ADMIN, PASSWORD), verbose=False)
        card, _ = admin.predict(RENAMED, "0", 1024, api_name="/load_model")
        assert "renamed" in card and ADMIN in card
        assert log_rows(server.db_path)[-1][:6] == (ADMIN, "127.0.0.1", RENAMED, DEMO_SHA256, "Q4_K_M", LOADED)
    finally:
        stop_server(server)


@pytest.mark.slow
def test_a_load_in_one_page_shows_in_another_within_the_refresh_period(local_server: Server, tmp_path: Path) -> None:
    from playwright.sync_api import Page, sync_playwright

    from tests.test_browser import CHROMIUM_FLAGS, chromium_path

    def wait_for(page: Page, selector: str, check: object, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while True:
            text = page.inner_text(selector)
            if check(text) or time.monotonic() > deadline:  # type: ignore[operator]
                return text
            time.sleep(0.2)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            loader, watcher = browser.new_page(locale="ja-JP"), browser.new_page(locale="ja-JP")
            for page in (loader, watcher):
                page.goto(local_server.url, wait_until="load")
                page.wait_for_selector("#chat-input textarea", timeout=60_000)
            assert "デモモデル" in watcher.inner_text("#demo-warning")
            assert "Admin Test" not in watcher.inner_text("#answered-by")

            loader.get_by_role("tab", name="モデル").click()
            loader.locator("#model-pick input").fill(NOT_DEMO)
            loader.get_by_role("option", name=NOT_DEMO).click()
            loader.locator("#load-model").click()
            shown = wait_for(loader, "#current-model", lambda text: "Admin Test" in text, 120)
            assert "Admin Test" in shown, shown
            loaded_at = time.monotonic()
            card = wait_for(watcher, "#answered-by", lambda text: "Admin Test" in text, REFRESH_SECONDS + 5)
            waited = time.monotonic() - loaded_at
            watcher.screenshot(path=str(tmp_path / "watcher.png"), full_page=True)
            assert "Admin Test" in card and NOT_DEMO in card, card
            assert waited <= REFRESH_SECONDS + 5
            assert watcher.inner_text("#demo-warning").strip() == ""
            assert loader.inner_text("#demo-warning").strip() == ""

            Client(local_server.url, verbose=False).predict("demo", "0", 1024, api_name="/load_model")
            banner = wait_for(watcher, "#demo-warning", lambda text: "デモモデル" in text, REFRESH_SECONDS + 5)
            assert "デモモデル" in banner
            assert "Admin Test" not in watcher.inner_text("#answered-by")
        finally:
            browser.close()
