"""The Ask tab's conversation in a real browser (Debian's Chromium, Playwright) against a real `jmedllm serve`."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.conftest import Server, start_server, stop_server
from tests.test_browser import CHROMIUM_FLAGS, chromium_path

pytestmark = pytest.mark.slow

STAMP = "tok/s"  # in the model stamp under every finished answer
LONG_SENTENCE = "The patient is a 70-year-old man with fever, cough, dyspnoea and chest pain for three days. "


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory, demo_model_path: Path, app_data_dir: Path,
                 ) -> Iterator[Server]:
    """The demo model with a 512-token context window, so a conversation soon outgrows it."""
    folder = tmp_path_factory.mktemp("small-server")
    server = start_server(["--model", "demo", "--ctx", "512", "--gpu-layers", "0"], folder / "server.log",
                          app_data_dir / "small.db")
    yield server
    stop_server(server)


def open_chat(browser: Any, server: Server, max_tokens: int = 16, **context: Any) -> Any:
    """A fresh page (its own conversation) on the Ask tab, answers limited to ``max_tokens``."""
    page = browser.new_context(locale="ja-JP", **context).new_page()
    page.requested = []
    page.on("request", lambda request: page.requested.append(request.url))
    page.goto(server.url, wait_until="load")
    page.wait_for_selector("#chat-input textarea", timeout=60_000)
    set_max_tokens(page, max_tokens)
    return page


def set_max_tokens(page: Any, count: int) -> None:
    box = page.locator("#max-tokens input[type=number]")
    box.fill(str(count))
    box.press("Enter")


def send(page: Any, text: str) -> None:
    page.locator("#chat-input textarea").fill(text)
    page.locator("#chat-input textarea").press("Enter")


def bot_texts(page: Any) -> list[str]:
    return page.locator('#chat [data-testid="bot"]').all_inner_texts()


def user_texts(page: Any) -> list[str]:
    return page.locator('#chat [data-testid="user"]').all_inner_texts()


def stamps(page: Any) -> int:
    return sum(STAMP in text for text in bot_texts(page))


def wait_for(check: Any, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def wait_answers(page: Any, count: int) -> None:
    wait_for(lambda: stamps(page) >= count, what=f"{count} finished answer(s)")


def offline_hosts(page: Any, server: Server) -> set[str]:
    hosts = {urlparse(url).netloc for url in page.requested if urlparse(url).scheme in ("http", "https", "ws", "wss")}
    return hosts - {f"127.0.0.1:{server.port}"}


def test_two_turn_japanese_conversation_streams_the_second_answer_and_copies(browser: Any, ui_server: Server) -> None:
    page = open_chat(browser, ui_server, permissions=["clipboard-read", "clipboard-write"])
    send(page, "糖尿病の三大合併症は何ですか？")
    wait_answers(page, 1)
    first = bot_texts(page)[-1]
    send(page, "透析患者ではどうですか？")
    seen: list[str] = []
    wait_for(lambda: len(user_texts(page)) == 2, what="the follow-up in the chat")
    deadline = time.monotonic() + 120
    while stamps(page) < 2 and time.monotonic() < deadline:
        texts = bot_texts(page)
        if len(texts) == 2 and texts[-1] and (not seen or texts[-1] != seen[-1]):
            seen.append(texts[-1])
        time.sleep(0.02)
    assert stamps(page) == 2 and bot_texts(page)[0] == first  # the first answer stays as it was
    marker = "（長さの上限で打ち切り：最大トークン数を増やしてください）"
    cut = [("· length" in text, marker in text) for text in bot_texts(page)]
    assert (True, True) in cut and all(stamp == said for stamp, said in cut), cut  # 16 tokens cut them short
    assert len(seen) >= 2, f"the second answer did not stream: {seen}"
    assert user_texts(page) == ["糖尿病の三大合併症は何ですか？", "透析患者ではどうですか？"]
    copy_buttons = page.locator('#chat button[aria-label="Copy message"]')
    assert copy_buttons.count() >= 2, page.inner_html("#chat")  # one per message
    copy_buttons.last.click()
    copied = page.evaluate("navigator.clipboard.readText()")
    answer_start = bot_texts(page)[-1].split("\n")[0]
    assert answer_start and answer_start in copied
    assert not offline_hosts(page, ui_server)
    page.context.close()


def test_stop_keeps_the_partial_answer_and_a_follow_up_works(browser: Any, ui_server: Server) -> None:
    from playwright.sync_api import expect

    page = open_chat(browser, ui_server, max_tokens=512)
    expect(page.locator("#stop")).to_be_disabled()  # nothing to stop yet
    send(page, "Write a long essay on the history of anaesthesia.")
    wait_for(lambda: any(text.strip() for text in bot_texts(page)), what="the answer to start")
    expect(page.locator("#stop")).to_be_enabled()
    page.locator("#stop").click()
    wait_answers(page, 1)
    expect(page.locator("#stop")).to_be_disabled(timeout=10_000)
    assert "停止しました" in bot_texts(page)[-1] and "cancelled" in bot_texts(page)[-1]
    set_max_tokens(page, 16)
    send(page, "Summarise it in one line.")
    wait_answers(page, 2)
    assert len(user_texts(page)) == 2
    page.context.close()


def saved_turns(db: Path, question: str) -> list[tuple[str, int, str]]:
    """(conversation id, position, finish reason) of every saved turn asking ``question``."""
    with sqlite3.connect(db) as conn:
        return conn.execute("select conversation_id, position, finish_reason from turns where question = ?",
                            [question]).fetchall()


def test_new_conversation_mid_answer_stops_it_and_keeps_the_next_question_apart(
        browser: Any, ui_server: Server, app_data_dir: Path) -> None:
    """The next patient's question must not carry the previous one's context; the stopped answer is kept."""
    from playwright.sync_api import expect

    page = open_chat(browser, ui_server, max_tokens=512)
    page.locator("#keep-history input").check()
    first, second = "Write a long essay on the history of sepsis care.", "インフルエンザの治療薬は？"
    send(page, first)
    wait_for(lambda: any(text.strip() for text in bot_texts(page)), what="the answer to start")
    page.locator("#new-conversation").click()
    wait_for(lambda: not bot_texts(page) and not user_texts(page), timeout=10, what="an empty chat")
    expect(page.locator("#stop")).to_be_disabled(timeout=10_000)
    set_max_tokens(page, 16)
    send(page, second)
    wait_answers(page, 1)
    assert user_texts(page) == [second]
    db = app_data_dir / "ui-tests.db"
    wait_for(lambda: saved_turns(db, first) and saved_turns(db, second), timeout=30, what="both turns saved")
    (stopped_in, position_1, reason), = saved_turns(db, first)
    (asked_in, position_2, _), = saved_turns(db, second)
    assert reason == "cancelled" and stopped_in != asked_in and position_1 == position_2 == 0
    page.context.close()


def test_reloading_mid_answer_keeps_the_turn_in_history(browser: Any, ui_server: Server, app_data_dir: Path) -> None:
    page = open_chat(browser, ui_server, max_tokens=512)
    page.locator("#keep-history input").check()
    question = "Write a long essay on the history of antibiotics."
    send(page, question)
    wait_for(lambda: any(text.strip() for text in bot_texts(page)), what="the answer to start")
    page.reload(wait_until="load")
    db = app_data_dir / "ui-tests.db"
    wait_for(lambda: bool(saved_turns(db, question)), timeout=60, what="the interrupted turn in history")
    page.context.close()


def test_regenerate_replaces_the_last_answer(browser: Any, ui_server: Server) -> None:
    page = open_chat(browser, ui_server)
    send(page, "インフルエンザの治療薬は？")
    wait_answers(page, 1)
    page.locator("#regenerate").click()
    wait_for(lambda: stamps(page) == 0, what="the regenerated answer to start")
    wait_answers(page, 1)
    assert len(user_texts(page)) == 1 and len(bot_texts(page)) == 1
    page.context.close()


def test_enter_while_composing_japanese_does_not_send(browser: Any, ui_server: Server) -> None:
    page = open_chat(browser, ui_server)
    box = page.locator("#chat-input textarea")
    box.focus()
    client = page.context.new_cdp_session(page)
    client.send("Input.imeSetComposition", {"text": "かんじ", "selectionStart": 3, "selectionEnd": 3})
    page.keyboard.press("Enter")
    time.sleep(1.0)
    assert user_texts(page) == []  # the Enter confirmed the conversion, nothing was sent
    client.send("Input.insertText", {"text": "漢字"})
    assert box.input_value().rstrip("\n") == "漢字"  # (the simulated IME leaves its Enter's newline in the box)
    box.fill("漢字")
    page.keyboard.press("End")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("とは？")
    assert box.input_value() == "漢字\nとは？"  # Shift+Enter is a new line
    assert user_texts(page) == []
    page.keyboard.press("Enter")
    wait_for(lambda: len(user_texts(page)) == 1, timeout=30, what="the message to be sent")
    assert user_texts(page)[0].split() == ["漢字", "とは？"]
    wait_answers(page, 1)
    page.context.close()


def test_html_in_a_question_is_shown_as_text_and_a_table_renders(browser: Any, ui_server: Server) -> None:
    page = open_chat(browser, ui_server)
    send(page, "Explain this:\n\n| drug | dose |\n|---|---|\n| metformin | <img src=http://127.0.0.1:9/x> |")
    wait_answers(page, 1)
    user = page.locator('#chat [data-testid="user"]')
    assert user.locator("table").count() == 1
    assert user.locator("img").count() == 0 and page.locator("#chat img").count() == 0
    assert "<img src=" in user.inner_text()
    assert not offline_hosts(page, ui_server), "the page contacted another host"
    page.context.close()


def test_a_conversation_that_outgrows_the_context_asks_before_dropping_turns(browser: Any,
                                                                           small_server: Server) -> None:
    page = open_chat(browser, small_server)
    send(page, LONG_SENTENCE * 14 + "What is the diagnosis?")
    wait_answers(page, 1)
    send(page, LONG_SENTENCE * 14 + "Which antibiotic?")
    page.locator("#context-note-text").wait_for(state="visible", timeout=30_000)
    assert "512" in page.inner_text("#context-note-text")
    assert len(user_texts(page)) == 1  # nothing was sent
    page.locator("#drop-and-send").click()
    wait_answers(page, 2)
    assert any("もう見えていません" in text for text in bot_texts(page))
    assert page.locator("#context-note-text").is_hidden()
    page.context.close()


def test_deleting_a_saved_conversation_asks_first_and_cancel_keeps_it(browser: Any, ui_server: Server,
                                                                      app_data_dir: Path) -> None:
    from playwright.sync_api import expect

    page = open_chat(browser, ui_server)
    page.locator("#keep-history input").check()
    question = "Ward 5 handover question to delete."
    send(page, question)
    wait_answers(page, 1)
    db = app_data_dir / "ui-tests.db"
    wait_for(lambda: bool(saved_turns(db, question)), timeout=30, what="the turn saved")
    page.locator("#history-panel .label-wrap").click()
    page.locator("#history-pick input").click()
    page.get_by_role("option", name=re.compile(re.escape(question[:30]))).click()
    send(page, "And the follow-up?")  # saving this answer refreshes the list: the choice stays
    wait_answers(page, 2)
    expect(page.locator("#history-pick input")).to_have_value(re.compile(re.escape(question[:30]) + ".*[(]2[)]"))
    confirm = page.locator("#history-confirm")
    page.locator("#history-delete").click()
    expect(page.locator("#history-confirm-text")).to_contain_text(question[:30])
    page.locator("#history-cancel").click()
    expect(confirm).to_be_hidden()
    assert saved_turns(db, question)  # nothing deleted without the confirmation
    page.locator("#history-delete").click()
    page.locator("#history-confirm-delete").click()
    wait_for(lambda: not saved_turns(db, question), timeout=30, what="the conversation deleted")
    expect(confirm).to_be_hidden()
    wait_for(lambda: not bot_texts(page), timeout=10, what="its text off the screen")  # it was the open one
    page.context.close()


def test_a_refused_send_leaves_stop_disabled(browser: Any, ui_server: Server) -> None:
    from playwright.sync_api import expect

    page = open_chat(browser, ui_server)
    page.locator("#chat-input textarea").press("Enter")  # an empty question: refused with a message
    expect(page.get_by_text("The question is empty").first).to_be_visible(timeout=10_000)
    expect(page.locator("#stop")).to_be_disabled(timeout=10_000)
    page.context.close()


def test_stop_pressed_while_waiting_for_the_model_stops_that_question(browser: Any, ui_server: Server,
                                                                      app_data_dir: Path) -> None:
    """Another user's long answer holds the model; Stop on a question still waiting must stop it too."""
    from playwright.sync_api import expect

    busy_page = open_chat(browser, ui_server, max_tokens=512)
    send(busy_page, "Write a long essay on the history of surgery.")
    wait_for(lambda: any(text.strip() for text in bot_texts(busy_page)), what="the first answer to start")
    page = open_chat(browser, ui_server, max_tokens=64)
    page.locator("#keep-history input").check()
    question = "Queued question, stopped before it began."
    send(page, question)
    expect(page.locator("#stop")).to_be_enabled(timeout=10_000)
    page.locator("#stop").click()
    busy_page.locator("#stop").click()
    wait_answers(page, 1)
    db = app_data_dir / "ui-tests.db"
    wait_for(lambda: bool(saved_turns(db, question)), timeout=30, what="the stopped turn saved")
    (_, _, reason), = saved_turns(db, question)
    assert reason == "cancelled"
    assert "停止しました" in bot_texts(page)[-1]
    busy_page.context.close()
    page.context.close()
