"""The benchmark's live progress: an honest time-left estimate that grows while an answer takes long,
run statuses in the UI language, and a run followed in a helper thread with a tick between answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from app.bench.runner import RunProgress
from app.ui import bench_live
from app.ui.bench_live import LiveRun, clock, done_text, paced, timing_text


def event(done: int, answered: int, elapsed: float, total: int = 10, status: str = "running") -> RunProgress:
    return RunProgress(run_id=7, done=done, total=total, correct=done // 2, answered_now=answered,
                       elapsed_s=elapsed, status=status)


def test_clock() -> None:
    assert [clock(s) for s in (0, 65.9, 3723)] == ["0:00", "1:05", "1:02:03"]


def test_the_time_left_is_the_mean_so_far_times_the_questions_left_and_grows_while_an_answer_takes_long() -> None:
    assert timing_text(event(0, 0, 0.0), 35, "ja") == "経過 0:35 · 最初の回答を待っています"
    assert timing_text(event(1, 1, 6.0), 6, "en") == "0:06 elapsed · 10.0 answers/min"  # too few answers to guess
    assert timing_text(event(4, 4, 40.0), 40, "en") == "0:40 elapsed · about 1:00 left"  # 10 s a question, 6 left
    assert timing_text(event(4, 4, 40.0), 100, "ja") == "経過 1:40 · 残り約 2:00"  # the 5th has taken 60 s already
    resumed = RunProgress(run_id=7, done=8, total=10, resumed=6, answered_now=2, elapsed_s=20.0)
    assert timing_text(resumed, 20, "en") == "0:20 elapsed · 6.0 answers/min"  # only this session's answers count


def test_a_run_that_ended_says_how_in_the_ui_language() -> None:
    stopped = event(3, 3, 30.0, status="interrupted")
    assert done_text(stopped, "ja").startswith("**実行 7: 中断** · 3/10 件回答")
    assert "同じ設定でもう一度押すと再開します" in done_text(stopped, "ja")
    assert done_text(event(10, 10, 9.0, status="complete"), "en").startswith("**Run 7: complete** · 10/10 answers")
    assert "**実行 7: 完了**" in done_text(event(10, 10, 9.0, status="complete"), "ja")


def slow(items: list[int], pause_s: float, stop: threading.Event | None = None) -> Iterator[int]:
    for item in items:
        if stop is not None and stop.is_set():
            return
        time.sleep(pause_s)
        yield item


def test_paced_ticks_between_items_and_raises_their_error() -> None:
    got = list(paced(slow([1, 2], 0.25), 0.05, threading.Event()))
    assert [x for x in got if x is not None] == [1, 2] and got.count(None) >= 4

    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("engine died")

    with pytest.raises(ValueError, match="engine died"):
        list(paced(failing(), 0.05, threading.Event()))


def test_paced_closed_early_stops_the_run_and_waits_for_it() -> None:
    stop = threading.Event()
    items = paced(slow(list(range(100)), 0.02, stop), 1.0, stop)
    assert next(items) == 0
    items.close()
    assert stop.is_set() and not [t for t in threading.enumerate() if t.name == "bench-run"]


def test_other_pages_see_the_run_in_progress_and_how_it_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_live, "PACE_S", 0.05)
    live = LiveRun()
    assert live.watch_text("en") is None
    events = iter([event(0, 0, 0.0), event(1, 1, 1.0)])
    followed = live.follow(events, threading.Event())
    assert next(followed).done == 0 and live.running
    watched = live.watch_text("ja") or ""
    assert watched.startswith("⏳ **実行 7: 実行中**（このサーバーの別のページで開始") and "0/10 件回答" in watched
    assert [e.done for e in followed][-1] == 1
    assert not live.running and live.watch_text("en") is None
    assert live.event is not None and live.event.status == "failed"  # it ended without its last event
