"""The one error type of the training commands."""

from __future__ import annotations

from app.errors import UserError


class TrainError(UserError):
    """Training cannot start or go on as asked; the message says why and what to do."""
