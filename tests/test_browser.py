"""A real browser (Debian's Chromium, driven by Playwright) asks a Japanese question offline."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import Server

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
    "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    path = os.environ.get("JMEDLLM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        message = "Chromium is not installed (apt-get install chromium); .ci/run installs it"
        if os.environ.get("JMEDLLM_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_browser_asks_in_japanese_and_page_stays_offline(ui_server: Server, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        page = browser.new_page(locale="ja-JP")
        page.on("request", lambda request: requested.append(request.url))
        page.goto(ui_server.url, wait_until="load")
        page.wait_for_selector("#chat-input textarea", timeout=60_000)
        assert "診断ではありません" in page.inner_text("#notice")
        assert "Decision support, not a diagnosis" in page.inner_text("#notice")
        assert "デモモデル" in page.inner_text("#demo-warning")

        page.locator("#chat-input textarea").fill("発熱と咳が3日続いています。考えられる疾患は何ですか？")
        page.locator("#send").click()
        answer = page.locator('#chat [data-testid="bot"]')
        seen: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            value = answer.last.inner_text() if answer.count() else ""
            if value and (not seen or value != seen[-1]):
                seen.append(value)
            if "tok/s" in page.inner_text("#answered-by") and seen:
                break
            time.sleep(0.05)
        page.screenshot(path=str(tmp_path / "ask.png"), full_page=True)
        page.locator("#ui-language").get_by_label("English").check()
        page.get_by_role("button", name="Send", exact=True).wait_for(timeout=10_000)
        page.get_by_role("tab", name="Model", exact=True).wait_for(timeout=10_000)
        page.screenshot(path=str(tmp_path / "english.png"), full_page=True)
        # the Benchmark tab follows the toggle too, and its plots render without outside requests
        page.get_by_role("tab", name="Benchmark").click()
        page.get_by_role("button", name="Run self-benchmark").wait_for(timeout=10_000)
        page.locator("#ui-language").get_by_label("日本語").check()
        page.get_by_role("button", name="セルフベンチマークを実行").wait_for(timeout=10_000)
        page.screenshot(path=str(tmp_path / "benchmark.png"), full_page=True)
        browser.close()

    assert seen, "no answer appeared"
    assert len(seen) >= 2, f"answer did not stream: {seen}"
    assert seen[-1].startswith(seen[0])
    hosts = {urlparse(url).netloc for url in requested if urlparse(url).scheme in ("http", "https", "ws", "wss")}
    assert hosts == {f"127.0.0.1:{ui_server.port}"}, f"page contacted other hosts: {hosts}"
