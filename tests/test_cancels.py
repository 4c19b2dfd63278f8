"""Stop buttons' cancel flags: Stop reaches work still waiting in the queue, and only its own session's."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from app.ui.cancels import CancelRegistry


def session(name: str) -> Any:
    return SimpleNamespace(session_hash=name)


def test_stop_pressed_while_the_work_waits_stops_it_when_it_begins() -> None:
    cancels, page = CancelRegistry(), session("a")
    cancels.arm(page)  # the click: the answer now waits for the model
    cancels.cancel(page)  # Stop
    with cancels.claimed(page) as flag:  # the answer begins
        assert flag.is_set()


def test_stop_reaches_running_work_and_a_later_question_starts_unstopped() -> None:
    cancels, page, other = CancelRegistry(), session("a"), session("b")
    cancels.arm(page)
    with cancels.claimed(page) as running, cancels.claimed(other) as elsewhere:
        cancels.cancel(page)
        assert running.is_set() and not elsewhere.is_set()
    cancels.arm(page)
    with cancels.claimed(page) as later:
        assert not later.is_set()


def test_a_flag_armed_for_a_refused_question_is_not_taken_by_the_next_one() -> None:
    cancels, page = CancelRegistry(), session("a")
    cancels.arm(page)  # refused (an empty question): never claimed
    with cancels.claimed(page) as running:  # an API call: arms nothing
        cancels.cancel(page)
        assert running.is_set()
    cancels.arm(page)
    with cancels.claimed(page) as next_one:
        assert not next_one.is_set()


def test_new_conversation_abandons_work_that_has_not_begun() -> None:
    cancels, page = CancelRegistry(), session("a")
    cancels.arm(page)
    cancels.cancel(page, abandon=True)
    with cancels.claimed(page) as flag:
        assert flag.is_set() and flag.abandoned
