"""Numerical helpers shared by the benchmark and the conversion tools."""

from __future__ import annotations

import numpy as np


def log_softmax(values: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax in float64 along the last axis (a 1-D row or a 2-D array of rows)."""
    values = np.asarray(values, dtype=np.float64)
    shifted = values - values.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
