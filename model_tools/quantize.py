"""Quantize a GGUF with llama.cpp's own quantizer (``llama_model_quantize`` via llama-cpp-python)."""

from __future__ import annotations

import ctypes
import os
import re
from pathlib import Path

from tqdm import tqdm

from app.atomic import atomic_path
from model_tools.checkpoint import ConvertError
from model_tools.interrupts import deferred

QUANT_TYPES = ("Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0")
# Approximate bits per weight of each type (llama.cpp's quantize table), for disk estimates.
BITS_PER_WEIGHT = {"Q4_K_M": 4.9, "Q5_K_M": 5.7, "Q6_K": 6.6, "Q8_0": 8.5, "F16": 16.0, "F32": 32.0, "BF16": 16.0}
_PROGRESS = re.compile(rb"\[\s*(\d+)/\s*(\d+)\]")
_STOPPING = "Stopping once llama.cpp has finished this quantization (it cannot stop part-way); nothing will be kept."


def parse_quant_types(value: str) -> list[str]:
    """``"Q4_K_M,Q8_0"`` -> ``["Q4_K_M", "Q8_0"]``, refusing unknown types."""
    types = [v.strip().upper() for v in value.split(",") if v.strip()]
    unknown = [t for t in types if t not in QUANT_TYPES]
    if unknown or not types:
        raise ConvertError(f"unsupported quantization type(s) {unknown or value!r}; "
                           f"choose from {', '.join(QUANT_TYPES)}")
    return types


def quantize(src: Path, dst: Path, quant_type: str = "Q4_K_M", threads: int | None = None,
             progress: bool = True) -> Path:
    """Quantize ``src`` (F32/F16/BF16 GGUF) to ``dst`` atomically, on all cores, with a progress bar."""
    import llama_cpp
    import llama_cpp._logger as llama_logger

    quant_type = parse_quant_types(quant_type)[0]
    src = Path(src)
    if not src.is_file():
        raise ConvertError(f"input GGUF not found: {src}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant_type}")
    params.nthread = threads or os.cpu_count() or 1
    bar = tqdm(desc=f"quantize {quant_type}", unit="tensor", disable=not progress)
    errors: list[str] = []

    @llama_cpp.llama_log_callback
    def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        match = _PROGRESS.search(text or b"")
        if match:
            bar.total = int(match[2])
            bar.n = int(match[1])
            bar.refresh()
        if level == 3:
            errors.append((text or b"").decode("utf-8", "replace").strip())

    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))
    try:
        with atomic_path(Path(dst)) as tmp:
            with deferred(_STOPPING):
                status = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
            if status != 0:
                raise ConvertError(f"llama.cpp failed to quantize {src.name} to {quant_type}: "
                                   f"{' '.join(errors) or status}")
    finally:
        llama_cpp.llama_log_set(llama_logger.llama_log_callback, ctypes.c_void_p(0))
        bar.close()
    return Path(dst)
