"""Stop buttons: one cancel flag per browser session, so Stop only stops that session's work."""

from __future__ import annotations

import threading

import gradio as gr


def _session(request: gr.Request) -> str:
    """The browser session of ``request`` (API calls without one share a key)."""
    return getattr(request, "session_hash", None) or "local"


class CancelFlag(threading.Event):
    """Set to stop a piece of work; ``abandoned`` too when its result is no longer wanted on the page (New
    conversation), so the work must not show it."""

    abandoned = False


class CancelRegistry:
    """The latest cancel flag of each browser session."""

    def __init__(self) -> None:
        self._events: dict[str, CancelFlag] = {}
        self._lock = threading.Lock()

    def fresh(self, request: gr.Request) -> CancelFlag:
        """A new, unset flag for the next piece of work of ``request``'s session."""
        with self._lock:
            event = self._events[_session(request)] = CancelFlag()
            return event

    def cancel(self, request: gr.Request, abandon: bool = False) -> None:
        """Set the current flag of ``request``'s session, if it has one (``abandon``: see :class:`CancelFlag`)."""
        with self._lock:
            event = self._events.get(_session(request))
        if event is not None:
            event.abandoned = event.abandoned or abandon
            event.set()
