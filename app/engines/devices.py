"""Which GPUs llama.cpp can see, read from ggml's backend device registry."""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import llama_cpp

# enum ggml_backend_dev_type (ggml-backend.h): CPU, GPU, IGPU, ACCEL, META
_GPU_TYPES = {1: "GPU", 2: "integrated GPU"}


@functools.cache
def _ggml() -> ctypes.CDLL | None:
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    for name in ("libggml.so", "libggml.dylib", "ggml.dll"):
        if (lib_dir / name).exists():
            lib = ctypes.CDLL(str(lib_dir / name))
            lib.ggml_backend_dev_count.restype = ctypes.c_size_t
            lib.ggml_backend_dev_get.restype = ctypes.c_void_p
            lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
            lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
            lib.ggml_backend_dev_description.restype = ctypes.c_char_p
            lib.ggml_backend_dev_description.argtypes = [ctypes.c_void_p]
            return lib
    return None


@functools.cache
def gpu_devices() -> tuple[str, ...]:
    """Descriptions of the GPUs llama.cpp would offload to (empty on a CPU-only build or machine)."""
    if not llama_cpp.llama_supports_gpu_offload():
        return ()
    lib = _ggml()
    if lib is None:  # unknown layout: trust the build flag
        return ("GPU",)
    devices = []
    for index in range(lib.ggml_backend_dev_count()):
        device = lib.ggml_backend_dev_get(index)
        kind = lib.ggml_backend_dev_type(device)
        if kind in _GPU_TYPES:
            devices.append((lib.ggml_backend_dev_description(device) or b"").decode() or _GPU_TYPES[kind])
    return tuple(devices)


def describe_device(gpu_layers: int, n_threads: int) -> str:
    """Where a model's layers run, in words, for the model card."""
    gpus = gpu_devices()
    if gpu_layers == 0 or not gpus:
        return f"CPU ({n_threads} threads)"
    if gpu_layers < 0:
        return f"GPU: {gpus[0]} (all layers)"
    return f"GPU: {gpus[0]} ({gpu_layers} layers) + CPU"
