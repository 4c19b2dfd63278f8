"""The message a user sees when the UI refuses a request (empty question, no conversation chosen, ...).

Shown as Gradio's error toast, logged as one line: not as Gradio's default traceback, which filled the
server log with 40 lines for every empty Enter and hid the real failures from the administrator.
"""

from __future__ import annotations

import logging

import gradio as gr

log = logging.getLogger(__name__)


class Refused(gr.Error):
    """A refusal to show in the page: its ``message`` is for the user, one line of it goes to the log."""

    def __init__(self, message: str) -> None:
        super().__init__(message, print_exception=False)
        log.info("refused: %s", " ".join(message.split()))
