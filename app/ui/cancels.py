"""Stop buttons: one cancel flag per browser session, so Stop only stops that session's work."""

from __future__ import annotations

import threading


class CancelRegistry:
    """The latest cancel flag of each browser session."""

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def fresh(self, session: str) -> threading.Event:
        """A new, unset flag for ``session``'s next piece of work."""
        with self._lock:
            event = self._events[session] = threading.Event()
            return event

    def cancel(self, session: str) -> None:
        """Set ``session``'s current flag, if it has one."""
        with self._lock:
            event = self._events.get(session)
        if event is not None:
            event.set()
