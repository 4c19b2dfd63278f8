"""Stop buttons: one cancel flag per browser session, so Stop only stops that session's work."""

from __future__ import annotations

import threading

import gradio as gr


def _session(request: gr.Request) -> str:
    """The browser session of ``request`` (API calls without one share a key)."""
    return getattr(request, "session_hash", None) or "local"


class CancelRegistry:
    """The latest cancel flag of each browser session."""

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def fresh(self, request: gr.Request) -> threading.Event:
        """A new, unset flag for the next piece of work of ``request``'s session."""
        with self._lock:
            event = self._events[_session(request)] = threading.Event()
            return event

    def cancel(self, request: gr.Request) -> None:
        """Set the current flag of ``request``'s session, if it has one."""
        with self._lock:
            event = self._events.get(_session(request))
        if event is not None:
            event.set()
