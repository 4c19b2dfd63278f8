"""The Benchmark tab on a machine without IgakuQA, in a real browser (Debian's Chromium, Playwright):
it says what to do (Run disabled), refuses an empty file and a broken CSV naming the file the user
picked (one problem a line), takes the GitHub zip and a hospital's CSV question bank as uploads,
runs both right after (Stop enabled only while running; another page follows the run's progress),
shows them side by side in the paper-style table, and refuses a bad zip."""

from __future__ import annotations

import threading
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


GATE = threading.Event()  # the scripted engine answers only while it is set


@pytest.fixture()
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The UI in this process, with an empty data folder: no clone configured, no ../shared/igakuqa to fall back on."""
    monkeypatch.setenv("JMEDLLM_DATA_DIR", str(tmp_path / "appdata"))
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.setattr("app.bench.data.PROJECT_ROOT", tmp_path / "no-project")
    GATE.set()
    engine = ScriptedEngine(lambda _prompt: "a\n" if GATE.wait(60) else "")  # every gold answer of both sets is "a"
    state = AppState(engine, ServeOptions(port=free_port(), db_path=tmp_path / "bench.db"))
    with app_in_thread(state) as (url, _):
        yield url
    GATE.set()


def upload_and_import(page: Any, archive: Path, outcome: str) -> str:
    """Upload ``archive`` in the import box, press Import, wait for ``outcome`` there and return the whole message."""
    from playwright.sync_api import expect

    clear = page.locator("#bench-import-file").get_by_role("button", name="Clear")
    if clear.count():  # the file of an import that failed is still there
        clear.click()
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
    from playwright.sync_api import expect

    page.locator("#bench-limit input").fill("2")
    page.locator("#bench-run").click()  # no restart: an imported set answers at once
    page.locator("#bench-status").get_by_text(f"Run {run_id}: complete").wait_for(timeout=60_000)
    assert "2/2" in page.locator("#bench-status").inner_text()
    assert "Gestalt" in page.locator("#bench-results").inner_text()
    expect(page.locator("#bench-stop")).to_be_disabled()
    expect(page.locator("#bench-run")).to_be_enabled()


def run_while_another_page_watches(page: Any, browser: Any, url: str, run_id: int) -> None:
    """Run two questions, the engine held back at first: Stop is usable and the time counts up between
    answers; a page opened meanwhile shows the run's progress, then how it ended."""
    from playwright.sync_api import expect

    GATE.clear()
    page.locator("#bench-limit input").fill("2")
    page.locator("#bench-run").click()
    expect(page.locator("#bench-stop")).to_be_enabled(timeout=10_000)
    expect(page.locator("#bench-run")).to_be_disabled()
    status = page.locator("#bench-status")
    expect(status).to_contain_text("waiting for the first answer", timeout=30_000)
    first = status.inner_text()
    expect(status).not_to_have_text(first, timeout=5_000)  # the elapsed time counts up without an answer
    other = browser.new_page()
    other.goto(url, wait_until="load")
    other.get_by_role("tab", name="Benchmark").click()
    watched = other.locator("#bench-status")
    expect(watched).to_contain_text(f"Run {run_id}: running, started on another page", timeout=30_000)
    assert "0/2 answers" in watched.inner_text() and "elapsed" in watched.inner_text()
    expect(other.locator("#bench-stop")).to_be_disabled()
    GATE.set()
    status.get_by_text(f"Run {run_id}: complete").wait_for(timeout=60_000)
    expect(watched).to_contain_text(f"Run {run_id}: complete · 2/2 answers", timeout=30_000)
    other.close()
    expect(page.locator("#bench-stop")).to_be_disabled()


def refused(page: Any, upload: Path, *problems: str) -> None:
    """``upload`` is refused with each of ``problems`` on a line of its own, named as the user named it."""
    message = upload_and_import(page, upload, problems[-1])
    assert "Not imported" in message, message
    lines = [line.strip() for line in message.splitlines()]
    for problem in problems:
        assert any(line.startswith(problem) for line in lines), message
    assert "uploads-" not in message and "/" not in message.replace("a-h", ""), message


RESIDENTS_CSV = """id,question,choice_a,choice_b,choice_c,choice_d,answer,category
r1,アナフィラキシーの第一選択薬はどれか。,アドレナリン筋注,抗ヒスタミン薬,ステロイド,β遮断薬,a,救急
r2,急性心筋梗塞で最初に上昇するマーカーはどれか。,ミオグロビン,CK-MB,トロポニンT,LDH,a,循環器
r3,低血糖の初期対応で最も適切なのはどれか。,ブドウ糖投与,インスリン投与,経過観察,利尿薬,a,内分泌
"""


def test_import_the_igakuqa_zip_from_the_browser_then_run(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

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
        expect(page.locator("#bench-run")).to_be_disabled()  # nothing to run yet
        expect(page.locator("#bench-stop")).to_be_disabled()

        empty = tmp_path / "empty.csv"
        empty.write_bytes(b"")
        refused(page, empty, "empty.csv: the file is empty; no question set to import")
        broken = tmp_path / "broken.csv"
        broken.write_text(RESIDENTS_CSV.replace(",ブドウ糖投与,", ',"ブドウ糖投与,') + "r4,Q,x,y,,,z\n")
        refused(page, broken, 'broken.csv row 4: a quote (") opened in this row is never closed',
                "broken.csv row 5 (r4): answer 'z' is not a choice letter")

        message = upload_and_import(page, good, "Imported")
        assert "18 questions" in message, message
        status.get_by_text("18 問 / questions").wait_for(timeout=10_000)
        expect(page.locator("#bench-run")).to_be_enabled()
        run_while_another_page_watches(page, browser, server, 1)

        bank = tmp_path / "residents.csv"
        bank.write_text(RESIDENTS_CSV, encoding="utf-8")
        page.locator("#bench-import").get_by_text("Import a question set").click()  # closed once there was data
        message = upload_and_import(page, bank, "3 questions")  # the earlier import's message is replaced
        assert "Imported" in message and "residents" in message, message
        status.get_by_text("3 問 / questions").wait_for(timeout=10_000)  # the new set is chosen
        expect(page.locator("#bench-set input")).to_have_value("Quick check (3) / クイック")
        run_two(page, 2)
        runs = page.locator("#bench-runs").inner_text()
        assert "quick3" in runs and "quick20" not in runs  # a quick check of 3 questions is not called quick20

        show_paper_table(page, ["#1 · scripted.gguf · igakuqa", "#2 · scripted.gguf · residents"],
                         ["IgakuQA", "residents"])

        page.locator("#bench-import").get_by_text("Import a question set").click()  # closed once there was data
        message = upload_and_import(page, evil, "Not imported")
        assert "../evil" in message, message
        assert "3 問 / questions" in status.inner_text()  # the imported sets are still there
        page.screenshot(path=str(tmp_path / "import.png"), full_page=True)
        browser.close()
