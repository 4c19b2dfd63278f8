"""The benchmark run in progress in this server, as its pages see it.

The page that runs it shows a progress bar whose text (accuracy, elapsed time, time left) is
refreshed every :data:`PACE_S` seconds, also between answers (:func:`paced`), so the estimate
grows while an answer takes longer than the ones before it. Every other page shows the same
progress, read-only, in its status line (:class:`LiveRun`, read on page load and by a timer).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import replace
from typing import Any, TypeVar

from app.bench.report import percent
from app.bench.runner import RunProgress
from app.ui.i18n import t

PACE_S = 1.0  # how often the running page's progress text is refreshed
WATCH_S = 2.0  # how often another page reads the run's progress
MIN_ANSWERS_FOR_ESTIMATE = 3  # fewer answers in this run: elapsed time and rate, no estimate

Item = TypeVar("Item")


def clock(seconds: float) -> str:
    """``seconds`` as "1:05" or "1:02:03"."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def timing_text(event: RunProgress, since_start: float, lang: str) -> str:
    """Elapsed time and the time left: the mean time per question answered so far in this run (at least
    what the question being answered has taken already) times the questions left; with fewer than
    :data:`MIN_ANSWERS_FOR_ESTIMATE` answers, the rate so far instead."""
    elapsed = clock(since_start)
    answered = event.answered_now
    if not answered:
        return t("bench_timing_first", lang).format(elapsed=elapsed)
    if answered < MIN_ANSWERS_FOR_ESTIMATE:
        rate = answered / max(since_start, 1.0) * 60
        return t("bench_timing_rate", lang).format(elapsed=elapsed, rate=f"{rate:.1f}")
    mean = max(event.elapsed_s / answered, since_start / (answered + 1))
    return t("bench_timing_left", lang).format(elapsed=elapsed, left=clock(mean * (event.total - event.done)))


def status_name(status: str, lang: str) -> str:
    """A run's status ("complete", "interrupted", ...) in ``lang``."""
    return t(f"bench_status_{status}", lang)


def done_text(event: RunProgress, lang: str) -> str:
    """The status line once a run has ended: its status, answers and accuracy, and how to resume it."""
    resumed = t("bench_resumed", lang).format(n=event.resumed) if event.resumed else ""
    text = t("bench_done", lang).format(run=event.run_id, status=status_name(event.status, lang), done=event.done,
                                        total=event.total, resumed=resumed, acc=percent(event.accuracy))
    return text if event.status == "complete" else text + t("bench_resume_hint", lang)


def paced(events: Iterator[Item], every_s: float, stop: threading.Event) -> Generator[Item | None, None, None]:
    """The items of ``events``, produced in a helper thread, and None whenever ``every_s`` passes without
    one; an exception in ``events`` is raised here. When it is closed, ``stop`` is set (it must end
    ``events`` soon: the run's cancel flag) and the helper thread is waited for."""
    box: queue.Queue[tuple[bool, Any]] = queue.Queue()

    def produce() -> None:
        try:
            for item in events:
                box.put((True, item))
        except BaseException as exc:  # handed to the consumer, raised there
            box.put((False, exc))
        else:
            box.put((False, None))

    worker = threading.Thread(target=produce, name="bench-run", daemon=True)
    worker.start()
    try:
        while True:
            try:
                more, item = box.get(timeout=every_s)
            except queue.Empty:
                yield None
                continue
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        worker.join()


class LiveRun:
    """The run in progress in this server (the Run button runs one at a time), or the last one."""

    def __init__(self) -> None:
        self._seen: tuple[RunProgress, float] | None = None  # its latest event, and when its first came
        self.running = False

    @property
    def event(self) -> RunProgress | None:
        seen = self._seen
        return seen[0] if seen else None

    def follow(self, events: Iterator[RunProgress], stop: threading.Event) -> Generator[RunProgress, None, None]:
        """``events`` recorded as this server's run in progress, the latest repeated every :data:`PACE_S`
        seconds between them; a run that ends without its last event is recorded as failed."""
        self._seen, self.running = None, True
        try:
            with contextlib.closing(paced(events, PACE_S, stop)) as items:
                for item in items:
                    if item is not None:
                        self._seen = (item, self._seen[1] if self._seen else time.monotonic())
                    if self._seen is not None:
                        yield self._seen[0]
        finally:
            seen = self._seen
            if seen is not None and seen[0].status == "running":
                self._seen = (replace(seen[0], status="failed"), seen[1])
            self.running = False

    def timing(self, lang: str) -> str:
        """:func:`timing_text` of the run now ("" before its first event)."""
        seen = self._seen
        return timing_text(seen[0], time.monotonic() - seen[1], lang) if seen else ""

    def progress_text(self, lang: str) -> str:
        """The progress bar's text: accuracy so far and :meth:`timing`."""
        event = self.event
        return t("bench_progress", lang).format(acc=percent(event.accuracy if event else None),
                                                timing=self.timing(lang))

    def watch_text(self, lang: str) -> str | None:
        """The run in progress as another page shows it (read-only); None when none has started."""
        event = self.event
        if not self.running or event is None:
            return None
        return t("bench_live", lang).format(run=event.run_id, status=status_name(event.status, lang), done=event.done,
                                            total=event.total, acc=percent(event.accuracy), timing=self.timing(lang))
