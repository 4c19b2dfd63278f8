"""The API's concurrency gate: up to ``slots`` requests generate, up to ``4 * slots`` wait, the next is refused.

The engine's slot count is read on every call (the Model tab may load an engine with another).
Waiting is an asyncio future per request, woken in arrival order when a request leaves: no
thread is parked while a request waits its turn. The gate is one event loop's: not thread-safe.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from app.errors import UserError

QUEUE_PER_SLOT = 4


class QueueFull(UserError):
    """Every slot is generating and the queue is full."""

    def __init__(self, running: int, waiting: int) -> None:
        super().__init__(f"The model is busy: {running} requests are being answered and {waiting} are waiting, "
                         "the most this server queues. Retry in a few seconds.")


class Admission:
    """Counts the requests that generate (``running``) and those that wait for a slot (``waiting``)."""

    def __init__(self, slots: Callable[[], int], queue_per_slot: int = QUEUE_PER_SLOT) -> None:
        self._slots = slots
        self.queue_per_slot = queue_per_slot
        self.running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def enter(self) -> None:
        """Take a slot, waiting in line for one; :class:`QueueFull` at once when the line is full.

        Cancelled while waiting, the request leaves the line (or passes on a slot just given to it).
        """
        slots = self._slots()
        if self.running < slots and not self._waiters:
            self.running += 1
            return
        if len(self._waiters) >= self.queue_per_slot * slots:
            raise QueueFull(self.running, len(self._waiters))
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.leave()
            else:
                self._waiters.remove(turn)
            raise

    def leave(self) -> None:
        """Give a slot back: the longest-waiting request takes it."""
        self.running -= 1
        slots = self._slots()
        while self._waiters and self.running < slots:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                self.running += 1
