"""A byte progress bar on stderr for copies the CLI makes (imports of models and question sets)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm

BAR_FROM_BYTES = 8 * 2**20  # smaller copies finish before a bar says anything


@contextmanager
def copy_progress(desc: str = "Copying") -> Iterator[Callable[[int, int], None]]:
    """An ``on_progress(done_bytes, total_bytes)`` callback drawing a bar, closed on exit."""
    bar: tqdm | None = None

    def on_progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="B", unit_scale=True, desc=desc, file=sys.stderr,
                       disable=total < BAR_FROM_BYTES, dynamic_ncols=True)
        bar.update(done - bar.n)

    try:
        yield on_progress
    finally:
        if bar is not None:
            bar.close()
