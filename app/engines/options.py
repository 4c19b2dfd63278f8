"""Load options every engine face shares (CLI flags, the Model tab), parsed in one place."""

from __future__ import annotations

import os
from typing import Literal

from app.errors import UserError

GpuLayers = int | Literal["auto"]
DEFAULT_CONTEXT = 4096
CONTEXT_RANGE = (256, 131072)  # the context lengths (tokens) a load may ask for
GPU_LAYERS_HELP = '"auto" (all layers on a GPU when llama.cpp has GPU offload, else CPU) or a number'


class InvalidOption(UserError, ValueError):
    """A load option that cannot be understood."""


def parse_gpu_layers(value: str | None) -> GpuLayers:
    """ "auto" (also for an empty value) or a whole number of layers; anything else is a clear error."""
    text = (value or "auto").strip().lower()
    if text == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise InvalidOption(f"GPU layers must be {GPU_LAYERS_HELP}, not {value!r}.") from None


def default_threads() -> int:
    """All cores this process may use (llama-cpp-python's own default is half of them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
