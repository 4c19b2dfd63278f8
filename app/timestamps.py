"""The one timestamp format the app stores: UTC, ISO 8601, to the second."""

from __future__ import annotations

import datetime as dt


def utc_now() -> str:
    """Now, e.g. "2026-11-25T23:41:07+00:00"."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
