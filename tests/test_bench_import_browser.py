"""The Benchmark tab on a machine without IgakuQA, in a real browser (Debian's Chromium, Playwright):
it says what to do, takes the GitHub zip and a hospital's CSV question bank as uploads, runs both
right after, shows them side by side in the paper-style table, and refuses a bad zip."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.bench.data import DATA_ENV
from app.ui.state import AppState, ServeOptions
from tests.bench.conftest import write_block
from tests.conftest import app_in_thread, free_port
from tests.scripted_engine import ScriptedEngine
from tests.test_browser import CHROMIUM_FLAGS, chromium_path

pytestmark = pytest.mark.slow


def github_zip(target: Path, tmp_path: Path) -> Path:
    """A tiny IgakuQA repository zipped as GitHub serves it: everything under ``IgakuQA-main/``."""
    clone = write_block(tmp_path / "clone", n=3)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("IgakuQA-main/", "")
        for path in sorted(clone.rglob("*")):
            name = f"IgakuQA-main/{path.relative_to(clone).as_posix()}"
            zf.writestr(name + "/", "") if path.is_dir() else zf.write(path, name)
    return target


@pytest.fixture()
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The UI in this process, with an empty data folder: no clone configured, no ../shared/igakuqa to fall back on."""
    monkeypatch.setenv("JMEDLLM_DATA_DIR", str(tmp_path / "appdata"))
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.setattr("app.bench.data.PROJECT_ROOT", tmp_path / "no-project")
    engine = ScriptedEngine(lambda _prompt: "a\n")  # every gold answer of both sets is "a"
    state = AppState(engine, ServeOptions(port=free_port(), db_path=tmp_path / "bench.db"))
    with app_in_thread(state) as (url, _):
        yield url


def upload_and_import(page: Any, archive: Path, outcome: str) -> str:
    """Upload ``archive`` in the import box, press Import, wait for ``outcome`` there and return the whole message."""
    from playwright.sync_api import expect

    page.locator("#bench-import-file input[type=file]").set_input_files(str(archive))
    page.locator("#bench-import-file").get_by_text(archive.stem).wait_for(timeout=30_000)  # shown as stem + suffix
    page.locator("#bench-import-button").click()
    result = page.locator("#bench-import-status")
    expect(result).to_contain_text(outcome, timeout=60_000)
    return result.inner_text()


def show_paper_table(page: Any, runs: list[str], rows: list[str]) -> None:
    """The paper-style table of ``runs`` (listed without a reload) with ``rows``, then its CSV download."""
    from playwright.sync_api import expect

    page.locator("#bench-table-view").get_by_text("Paper-style table").click()
    for run in runs:
        page.locator("#bench-table-runs input").click()
        page.get_by_role("option", name=run).click()
    page.locator("#bench-table-show").click()
    table = page.locator("#bench-paper-table")
    expect(table).to_contain_text("Average", timeout=30_000)
    for row in rows:
        expect(table).to_contain_text(row)
    assert table.inner_text().count("n=2") == len(rows)  # one model column, a cell per set
    page.locator("#bench-table-csv").click()
    expect(page.locator("#bench-table-file")).to_contain_text("paper-table-", timeout=30_000)


def run_two(page: Any, run_id: int) -> None:
    """Run two questions of the chosen set as run ``run_id`` and wait for the result."""
    page.locator("#bench-limit input").fill("2")
    page.locator("#bench-run").click()  # no restart: an imported set answers at once
    page.locator("#bench-status").get_by_text(f"Run {run_id}: complete").wait_for(timeout=60_000)
    assert "2/2" in page.locator("#bench-status").inner_text()
    assert "Gestalt" in page.locator("#bench-results").inner_text()


RESIDENTS_CSV = """id,question,choice_a,choice_b,choice_c,choice_d,answer,category
r1,アナフィラキシーの第一選択薬はどれか。,アドレナリン筋注,抗ヒスタミン薬,ステロイド,β遮断薬,a,救急
r2,急性心筋梗塞で最初に上昇するマーカーはどれか。,ミオグロビン,CK-MB,トロポニンT,LDH,a,循環器
r3,低血糖の初期対応で最も適切なのはどれか。,ブドウ糖投与,インスリン投与,経過観察,利尿薬,a,内分泌
"""


def test_import_the_igakuqa_zip_from_the_browser_then_run(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    good = github_zip(tmp_path / "IgakuQA-main.zip", tmp_path)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../evil", "x")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(server, wait_until="load")
        page.get_by_role("tab", name="Benchmark").click()
        status = page.locator("#bench-data-status")
        status.get_by_text("No IgakuQA data on this machine yet").wait_for(timeout=30_000)
        told = status.inner_text()
        assert "この端末には IgakuQA のデータがまだありません" in told
        assert "jmedllm bench data add IgakuQA-main.zip" in told
        assert "github.com/jungokasai/IgakuQA" in told

        message = upload_and_import(page, good, "Imported")
        assert "18 questions" in message, message
        status.get_by_text("18 問 / questions").wait_for(timeout=10_000)
        run_two(page, 1)

        bank = tmp_path / "residents.csv"
        bank.write_text(RESIDENTS_CSV, encoding="utf-8")
        page.locator("#bench-import").get_by_text("Import a question set").click()  # closed once there was data
        message = upload_and_import(page, bank, "3 questions")  # the earlier import's message is replaced
        assert "Imported" in message and "residents" in message, message
        status.get_by_text("3 問 / questions").wait_for(timeout=10_000)  # the new set is chosen
        run_two(page, 2)

        show_paper_table(page, ["#1 · scripted.gguf · igakuqa", "#2 · scripted.gguf · residents"],
                         ["IgakuQA", "residents"])

        page.locator("#bench-import").get_by_text("Import a question set").click()  # closed once there was data
        message = upload_and_import(page, evil, "Not imported")
        assert "../evil" in message, message
        assert "3 問 / questions" in status.inner_text()  # the imported sets are still there
        page.screenshot(path=str(tmp_path / "import.png"), full_page=True)
        browser.close()
