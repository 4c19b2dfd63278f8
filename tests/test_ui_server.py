"""The UI through a real `jmedllm serve` process and gradio_client."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from gradio_client import Client

from app.demo_model import DEMO_SHA256
from app.paths import models_dir
from app.qa import Answer
from app.security import AUTH_ENV, Users, is_loopback, load_users
from app.ui.i18n import t
from app.ui.server import checked_options
from app.ui.state import ServeOptions
from tests.conftest import Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(ui_server: Server) -> Client:
    return Client(ui_server.url, verbose=False)


def test_ui_answers_a_japanese_question_with_its_model_card(client: Client) -> None:
    answer, chosen, card = client.predict(
        "糖尿病の三大合併症は何ですか？", "", "auto", "auto", "0", 48, False, api_name="/ask"
    )
    assert answer.strip()
    assert chosen == ""
    assert DEMO_SHA256[:12] in card
    assert "Q4_K_M" in card
    assert "tok/s" in card
    assert "demo model" in card


def test_ui_multiple_choice_names_the_option_its_answer_picks(client: Client) -> None:
    choices = ("Liver", "Pancreas", "Kidney")
    answer, chosen, _ = client.predict(
        "Which organ produces insulin?", "\n".join(choices), "en", "auto", "0", 32, False, api_name="/ask"
    )
    assert answer.strip()
    expected = Answer(SimpleNamespace(text=answer), "en", choices, None, "").chosen_text()  # type: ignore[arg-type]
    assert chosen == f"**{t('chosen', 'ja')}:** {expected or t('abstained', 'ja')}"


def test_empty_question_is_a_clear_error(client: Client) -> None:
    with pytest.raises(Exception, match="The question is empty"):
        client.predict("  ", "", "auto", "auto", "0", 16, False, api_name="/ask")


def test_history_is_stored_only_when_turned_on(client: Client, ui_server: Server) -> None:
    def count() -> int:
        if not ui_server.db_path.exists():
            return 0
        with sqlite3.connect(ui_server.db_path) as db:
            tables = {row[0] for row in db.execute("select name from sqlite_master where type='table'")}
            return db.execute("select count(*) from questions").fetchone()[0] if "questions" in tables else 0

    before = count()
    client.predict("Off the record question?", "", "en", "auto", "0", 16, False, api_name="/ask")
    assert count() == before
    client.predict("Recorded question?", "", "en", "auto", "0", 16, True, api_name="/ask")
    assert count() == before + 1
    with sqlite3.connect(ui_server.db_path) as db:
        row = db.execute("select question, model_sha256, quantization from questions order by id desc").fetchone()
    assert row == ("Recorded question?", DEMO_SHA256, "Q4_K_M")


def test_model_tab_rejects_a_non_gguf_file(client: Client) -> None:
    bogus = models_dir() / "weights.gguf"  # the server's models folder: same environment
    bogus.write_bytes(b"\x80\x04\x95 pickle bytes")
    try:
        with pytest.raises(Exception, match="not a GGUF model"):
            client.predict(bogus.name, "auto", 2048, api_name="/load_model")
        with pytest.raises(Exception, match="GPU layers must be"):
            client.predict("demo", "many", 2048, api_name="/load_model")
    finally:
        bogus.unlink()


def test_auth_parsing_and_refusal_beyond_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUTH_ENV, raising=False)
    text = "# staff\n" + Users({}).with_account("alice", "alice's password", admin=False).text()
    with pytest.raises(ValueError, match="plain-text"):
        Users.parse("alice:pw1", "f")
    auth_file = tmp_path / "auth.txt"
    auth_file.write_text(text)
    auth_file.chmod(0o600)
    users = load_users(auth_file)
    assert users is not None and users.verify("alice", "alice's password")
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0")
    with pytest.raises(ValueError, match="without a login"):
        checked_options(ServeOptions(host="0.0.0.0", port=1))


def test_stop_button_ends_the_answer_early(client: Client) -> None:
    job = client.submit(
        "Write a very long, detailed essay on the history of anaesthesia.", "", "en", "auto", "0", 2048, False,
        api_name="/ask",
    )
    deadline = time.monotonic() + 60
    while not job.outputs() and time.monotonic() < deadline:
        time.sleep(0.1)
    client.predict(api_name="/stop")
    answer, _, card = job.result(timeout=120)
    assert answer.endswith(("（停止しました）", "(stopped)"))
    assert "cancelled" in card
    tokens = int(card.split("this answer / この回答: ")[1].split(" tokens")[0])
    assert tokens < 2048


def test_model_tab_loads_a_gguf_and_shows_its_card(client: Client, demo_model_path: Path) -> None:
    card, log = client.predict("demo", "0", 1024, api_name="/load_model")
    assert DEMO_SHA256[:12] in card and demo_model_path.name.split(".")[0] in card
    assert "context 1024" in card
    assert "not for clinical use" in card
    assert log["data"][0][3] == demo_model_path.name and log["data"][0][6] == "loaded"
    answer, _, answered_by = client.predict("Hello?", "", "en", "auto", "0", 16, False, api_name="/ask")
    assert answer.strip() and "context 1024" in answered_by
