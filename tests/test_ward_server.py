"""A ward on one machine: `jmedllm serve --engine llama-server --parallel 4` answers four Chromium tabs
at once, and the official `openai` client streams from its API at the same time."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from app.security import API_KEYS_ENV, new_api_key
from tests.conftest import Server, start_server, stop_server
from tests.test_browser import CHROMIUM_FLAGS, chromium_path

pytestmark = pytest.mark.slow

KEY = new_api_key()
QUESTIONS = ["発熱と咳が3日続いています。考えられる疾患は？", "頭痛の原因を教えてください。",
             "What are the causes of chest pain?", "糖尿病の合併症は？"]


@pytest.fixture(scope="module")
def ward_server(tmp_path_factory: pytest.TempPathFactory, demo_model_path: Path, llama_server_binary: Path,
                app_data_dir: Path) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("ward")
    previous = os.environ.get(API_KEYS_ENV)
    os.environ[API_KEYS_ENV] = KEY
    try:
        server = start_server(["--model", "demo", "--engine", "llama-server", "--parallel", "4", "--ctx", "1024",
                               "--gpu-layers", "0"], folder / "server.log", app_data_dir / "ward.db")
    finally:
        if previous is None:
            os.environ.pop(API_KEYS_ENV)
        else:
            os.environ[API_KEYS_ENV] = previous
    yield server
    stop_server(server)


def test_four_browser_tabs_are_answered_at_once(ward_server: Server) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        pages = [browser.new_page(locale="ja-JP") for _ in QUESTIONS]
        for page, question in zip(pages, QUESTIONS, strict=True):
            page.goto(ward_server.url, wait_until="load")
            page.wait_for_selector("#chat-input textarea", timeout=60_000)
            assert "llama-server" in page.inner_text("#answered-by") and "同時4件" in page.inner_text("#answered-by")
            page.locator("#chat-input textarea").fill(question)
            page.locator("#max-tokens input[type=number]").fill("48")
            page.locator("#max-tokens input[type=number]").press("Tab")
        for page in pages:
            page.locator("#send").click()
        streaming_at_once = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            texts = [" ".join(page.locator('#chat [data-testid="bot"]').all_inner_texts()) for page in pages]
            cards = [page.inner_text("#answered-by") for page in pages]
            done = ["tok/s" in card and "(running)" not in card for card in cards]
            streaming_at_once = max(streaming_at_once, sum(bool(t) and not d for t, d in zip(texts, done, strict=True)))
            if all(done):
                break
            time.sleep(0.05)
        answers = [" ".join(page.locator('#chat [data-testid="bot"]').all_inner_texts()) for page in pages]
        pages[0].get_by_role("tab", name="モデル", exact=True).click()
        access = pages[0].locator("#model-access").inner_text(timeout=10_000)
        browser.close()
    assert "llama-server engine" in access and "--engine llama-server --model NAME" in access
    assert all(answer.strip() for answer in answers), answers
    assert streaming_at_once >= 3, "the tabs were answered one after another"


def test_the_openai_client_streams_while_others_ask(ward_server: Server) -> None:
    client = openai.OpenAI(base_url=f"{ward_server.url}v1", api_key=KEY, max_retries=0)
    (model,) = client.models.list().data
    results: dict[int, str] = {}

    def stream(index: int) -> None:
        pieces = []
        for chunk in client.chat.completions.create(
                model=model.id, messages=[{"role": "user", "content": QUESTIONS[index]}], max_tokens=24,
                temperature=0, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
        results[index] = "".join(pieces)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 4 and all(text.strip() for text in results.values())
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{ward_server.url}v1", api_key="wrong-" + KEY, max_retries=0).models.list()
