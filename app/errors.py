"""The one base class for errors whose message is meant for the person using the app.

Each face (CLI, UI, API) catches :class:`UserError` and shows its message; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user asked cannot be done as asked; the message says why and what to do."""
