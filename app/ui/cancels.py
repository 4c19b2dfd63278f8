"""Stop buttons: one cancel flag per browser session, so Stop only stops that session's work."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import gradio as gr


def _session(request: gr.Request) -> str:
    """The browser session of ``request`` (API calls without one share a key)."""
    return getattr(request, "session_hash", None) or "local"


class CancelFlag(threading.Event):
    """Set to stop a piece of work; ``abandoned`` too when its result is no longer wanted on the page (New
    conversation), so the work must not show it. ``claimed`` once the work has begun with it."""

    abandoned = False
    claimed = False


class CancelRegistry:
    """Each browser session's cancel flags: those of the work it runs, and one armed for work still waiting.

    Work may wait in the queue while the model serves others; Stop pressed then must stop it too, before
    it begins. So the click that starts work arms a flag at once (:meth:`arm`, outside the queue), the
    work takes that flag when it begins (:meth:`claimed`), and Stop sets every flag the session holds.
    """

    def __init__(self) -> None:
        self._flags: dict[str, list[CancelFlag]] = {}
        self._lock = threading.Lock()

    def arm(self, request: gr.Request) -> None:
        """A fresh flag for the next piece of work of ``request``'s session, which may have to wait."""
        with self._lock:
            flags = self._flags.setdefault(_session(request), [])
            flags[:] = [flag for flag in flags if flag.claimed]  # armed for work that was refused: not needed
            flags.append(CancelFlag())

    @contextlib.contextmanager
    def claimed(self, request: gr.Request) -> Iterator[CancelFlag]:
        """The flag of work of ``request``'s session that begins now, until it ends: the one armed for it
        (already set if Stop was pressed while it waited), or a new one (API calls arm nothing)."""
        with self._lock:
            flags = self._flags.setdefault(_session(request), [])
            flag = flags[-1] if flags and not flags[-1].claimed else CancelFlag()
            if flag not in flags:
                flags.append(flag)
            flag.claimed = True
        try:
            yield flag
        finally:
            with self._lock:
                if flag in flags:
                    flags.remove(flag)

    def cancel(self, request: gr.Request, abandon: bool = False) -> None:
        """Set every flag of ``request``'s session (``abandon``: see :class:`CancelFlag`)."""
        with self._lock:
            flags = list(self._flags.get(_session(request), []))
        for flag in flags:
            flag.abandoned = flag.abandoned or abandon
            flag.set()
