"""Settings shared by the UI's bookkeeping events (buttons enabled, pages refreshed)."""

from __future__ import annotations

from typing import Any

# Off the queue (never waiting behind a question), no progress spinner, not part of the API.
QUIET: dict[str, Any] = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}
