"""Ctrl-C and SIGTERM for long conversions and training: they stop the work even when Python loses them.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be. Raised inside a ctypes
callback (llama.cpp's log callback, called all through a quantization), a weakref callback (the import
machinery's) or a ``__del__``, it is printed as "Exception ignored" and lost, and the work ran on to
the end. The handlers here also record the signal: long loops call :func:`raise_if_interrupted` at each
tensor or step, and a C call that Python cannot stop runs under :func:`deferred`.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []


def _stop(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """Make Ctrl-C and SIGTERM (``kill``, ``systemctl stop``) raise ``KeyboardInterrupt`` and be remembered."""
    for signum in _SIGNALS:
        signal.signal(signum, _stop)


def raise_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` once if a signal was recorded here and not yet acted on."""
    if _received:
        _received.clear()
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred(notice: str) -> Iterator[None]:
    """Run a block that cannot be stopped part-way: a signal during it prints ``notice`` and is raised
    as ``KeyboardInterrupt`` when the block ends (in the main thread; elsewhere signals are not ours)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def record(signum: int, frame: FrameType | None) -> None:
        if not _received:
            print(f"\n{notice}", file=sys.stderr, flush=True)
        _received.append(signum)

    previous = {signum: signal.signal(signum, record) for signum in _SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    raise_if_interrupted()
