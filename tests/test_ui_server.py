"""The UI through a real `jmedllm serve` process and gradio_client."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from gradio_client import Client

from app.demo_model import DEMO_SHA256
from app.paths import models_dir
from app.qa import Answer
from app.security import AUTH_ENV, Users, is_loopback, load_users
from app.ui.cards import escape_markdown
from app.ui.i18n import t
from app.ui.server import checked_options
from app.ui.state import ServeOptions
from tests.conftest import Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(ui_server: Server) -> Client:
    return Client(ui_server.url, verbose=False)


def ask(client: Client, question: str, choices: str = "", language: str = "auto", max_tokens: int = 16,
        history: bool = False) -> tuple[str, str]:
    """A new conversation's first answer through the chat API: (the answer's message, the model card)."""
    client.predict(api_name="/new_conversation")
    chat, message, card, _note = client.predict(question, choices, language, "auto", "0", max_tokens, "default",
                                                history, api_name="/chat")
    assert message == ""
    return last_answer(chat), card


def last_answer(chat: list[dict]) -> str:
    return chat[-1]["content"][0]["text"]


def test_ui_answers_a_japanese_question_with_its_model_card(client: Client) -> None:
    answer, card = ask(client, "糖尿病の三大合併症は何ですか？", max_tokens=48)
    assert answer.strip()
    assert t("chosen", "ja") not in answer
    assert DEMO_SHA256[:12] in answer and "tok/s" in answer.replace("\\", "")  # the stamp under the answer
    assert DEMO_SHA256[:12] in card
    assert "Q4_K_M" in card
    assert "tok/s" in card
    assert "demo model" in card


def test_ui_multiple_choice_names_the_option_its_answer_picks(client: Client) -> None:
    choices = ("Liver", "Pancreas", "Kidney")
    message, _ = ask(client, "Which organ produces insulin?", "\n".join(choices), "en", 32)
    answer, chosen = message.split(f"\n\n**{t('chosen', 'ja')}:** ")
    assert answer.strip()
    expected = Answer(SimpleNamespace(text=answer), "en", choices, None, "").chosen_text()  # type: ignore[arg-type]
    assert chosen.startswith(escape_markdown(expected or t("abstained", "ja")))


def test_empty_question_is_a_clear_error_and_one_log_line(client: Client, ui_server: Server) -> None:
    logged = ui_server.log_path.stat().st_size
    with pytest.raises(Exception, match="The question is empty"):
        ask(client, "  ")
    with ui_server.log_path.open(encoding="utf-8") as log:
        log.seek(logged)
        lines = log.read().splitlines()
    assert [line for line in lines if "The question is empty" in line] == [
        "INFO app.ui.refused: refused: The question is empty. / 質問が空です。"]
    assert not any("Traceback" in line for line in lines)  # a user's slip is not a server failure


def test_history_is_stored_only_when_turned_on(client: Client, ui_server: Server) -> None:
    def count() -> int:
        if not ui_server.db_path.exists():
            return 0
        with sqlite3.connect(ui_server.db_path) as db:
            tables = {row[0] for row in db.execute("select name from sqlite_master where type='table'")}
            return db.execute("select count(*) from turns").fetchone()[0] if "turns" in tables else 0

    before = count()
    ask(client, "Off the record question?", language="en")
    assert count() == before
    ask(client, "Recorded question?", language="en", history=True)
    assert count() == before + 1
    with sqlite3.connect(ui_server.db_path) as db:
        row = db.execute("select question, model_sha256, quantization from turns order by id desc").fetchone()
    assert row == ("Recorded question?", DEMO_SHA256, "Q4_K_M")
    listed = client.predict(api_name="/history_list")
    assert listed  # the History panel lists it


def test_deleting_a_conversation_removes_its_exported_download(ui_server: Server) -> None:
    # The Markdown export holds patient text; once the conversation is deleted, its download must be gone
    # too (the web UI served its own copy of the file, which outlived the delete).
    client = Client(ui_server.url, verbose=False, download_files=False)
    ask(client, "Export then delete: patient K.", language="en", history=True)
    with sqlite3.connect(ui_server.db_path) as db:
        (conversation_id,) = db.execute("select id from conversations order by updated_at desc limit 1").fetchone()
    downloads = []
    for _ in range(2):  # two exports of different content: two copies served
        client.predict(api_name="/history_list")  # the picker's choices, as opening the panel fills them
        exported = client.predict(conversation_id, "en", api_name="/history_export")
        downloads.append(httpx.get(exported["url"], timeout=30))
        ask(client, "Another question to change the export.", language="en", history=False)
        client.predict(conversation_id, "en", api_name="/history_open")
        client.predict("A follow-up on patient K.", "", "en", "auto", "0", 16, "default", True, api_name="/chat")
    assert [r.status_code for r in downloads] == [200, 200]
    assert all("patient K" in r.text for r in downloads)
    client.predict(api_name="/history_list")
    client.predict(conversation_id, "en", api_name="/history_delete")
    after = [httpx.get(r.url, timeout=30) for r in downloads]
    assert [r.status_code for r in after] == [403, 403] and not any("patient K" in r.text for r in after)


def test_model_tab_rejects_a_non_gguf_file(client: Client) -> None:
    bogus = models_dir() / "weights.gguf"  # the server's models folder: same environment
    bogus.write_bytes(b"\x80\x04\x95 pickle bytes")
    try:
        with pytest.raises(Exception, match="not a GGUF model"):
            client.predict(bogus.name, "auto", 2048, api_name="/load_model")
        with pytest.raises(Exception, match="GPU layers must be"):
            client.predict("demo", "many", 2048, api_name="/load_model")
        with pytest.raises(Exception, match="先に読み込むモデルを選んでください。 / Choose a model to load first"):
            client.predict("", "auto", 2048, api_name="/load_model")  # nothing chosen
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
    client.predict(api_name="/new_conversation")
    job = client.submit(
        "Write a very long, detailed essay on the history of anaesthesia.", "", "en", "auto", "0", 1536, "default",
        False, api_name="/chat",
    )
    deadline = time.monotonic() + 60
    while not job.outputs() and time.monotonic() < deadline:
        time.sleep(0.1)
    client.predict(api_name="/stop")
    chat, _, card, _ = job.result(timeout=120)
    assert "（停止しました）" in last_answer(chat) and "cancelled" in last_answer(chat)
    assert "cancelled" in card
    tokens = int(card.split("this answer / この回答: ")[1].split(" tokens")[0])
    assert tokens < 1536


def test_model_tab_loads_a_gguf_and_shows_its_card(client: Client, demo_model_path: Path) -> None:
    card, log = client.predict("demo", "0", 1024, api_name="/load_model")
    assert DEMO_SHA256[:12] in card and demo_model_path.name.split(".")[0] in card
    assert "context 1024" in card
    assert "not for clinical use" in card
    assert log["data"][0][3] == demo_model_path.name and log["data"][0][6] == "loaded"
    answer, answered_by = ask(client, "Hello?", language="en")
    assert answer.strip() and "context 1024" in answered_by
