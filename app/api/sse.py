"""Server-sent events: ``data: JSON`` framing and a streaming response that always cleans up."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from starlette.responses import StreamingResponse

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

DONE = "data: [DONE]\n\n"


def event(data: dict[str, Any]) -> str:
    """One event carrying ``data`` as compact JSON (non-ASCII text kept as is)."""
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


class EventStream(StreamingResponse):
    """A ``text/event-stream`` of ``events``; ``on_close`` runs once it ends: finished, failed or disconnected.

    When the client goes away, Starlette cancels the stream; ``on_close`` then stops the work behind it.
    """

    def __init__(self, events: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(events, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
