"""Choosing and opening an engine: the one place that knows the three kinds and their settings.

``local`` (default): the GGUF in this process, one answer at a time. ``llama-server``: the GGUF
served by llama.cpp's own server, built from the pinned source, ``parallel`` answers at once.
``openai``: a model on any OpenAI-compatible endpoint (vLLM, llama-server, Ollama on a GPU server).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from app.engines.base import Engine
from app.engines.options import DEFAULT_CONTEXT, parse_gpu_layers
from app.engines.remote import DEFAULT_TIMEOUT_S, Endpoint, EndpointError, checked_url
from app.hashing import HashProgress

ENGINE_KINDS = ("local", "llama-server", "openai")
DEFAULT_PARALLEL = 4  # answers at once on a serving engine
MAX_KEY_FILE_BYTES = 4096


@dataclass(frozen=True)
class EngineSpec:
    """Which engine to open and how (the ``--engine`` options of serve, ask and bench run)."""

    kind: str = "local"
    model: str | None = None  # local and llama-server: a GGUF path, a models-folder name or "demo"
    gpu_layers: str = "auto"
    n_ctx: int = DEFAULT_CONTEXT
    threads: int | None = None
    parallel: int | None = None  # None: 1 on the local engine, DEFAULT_PARALLEL on the others
    url: str | None = None  # openai: the endpoint's base URL (…/v1)
    key_file: Path | None = None  # openai: a file holding the endpoint's API key
    served_model: str | None = None  # openai: the model id (None: the one the endpoint lists first)
    allow_plain_http: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def slots(self) -> int:
        return self.parallel or (1 if self.kind == "local" else DEFAULT_PARALLEL)


def read_key_file(path: Path) -> str:
    """The API key in ``path`` (its first line that is not blank or a # comment); the file must be private."""
    from app.security import check_private

    try:
        check_private(path, "engine key file")
        text = path.read_bytes()[:MAX_KEY_FILE_BYTES].decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EndpointError(f"Cannot read the engine key file {path}: {exc}") from exc
    keys = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise EndpointError(f"The engine key file {path} holds no key.")
    return keys[0]


def checked_spec(spec: EngineSpec) -> EngineSpec:
    """``spec`` if its settings fit together, so a bad one fails before anything loads or starts."""
    if spec.kind not in ENGINE_KINDS:
        raise EndpointError(f"Unknown engine {spec.kind!r}; choose one of {', '.join(ENGINE_KINDS)}.")
    parse_gpu_layers(spec.gpu_layers)
    if spec.kind == "local" and spec.slots != 1:
        raise EndpointError("The local engine answers one question at a time; for --parallel use "
                            "--engine llama-server.")
    if spec.kind == "openai":
        if not spec.url:
            raise EndpointError("--engine openai needs --engine-url URL (e.g. https://gpu-server:8000/v1).")
        spec = replace(spec, url=checked_url(spec.url, spec.allow_plain_http))
        if spec.key_file is not None:
            read_key_file(spec.key_file)
    elif spec.url or spec.key_file or spec.served_model:
        raise EndpointError("--engine-url, --engine-key-file and --engine-model are for --engine openai.")
    return spec


def open_engine(spec: EngineSpec, on_hash_progress: HashProgress | None = None,
                on_build_progress: Callable[[str], None] | None = None) -> Engine:
    """Load, start or connect the engine ``spec`` names (checked with :func:`checked_spec` first)."""
    spec = checked_spec(spec)
    if spec.kind == "openai":
        from app.engines.remote import OpenAIEngine

        key = read_key_file(spec.key_file) if spec.key_file else None
        return OpenAIEngine(Endpoint(spec.url or "", key, spec.served_model, spec.timeout_s), slots=spec.slots)
    from app.models import resolve_model

    path = resolve_model(spec.model)
    layers = parse_gpu_layers(spec.gpu_layers)
    if spec.kind == "llama-server":
        from app.engines.llama_server import LlamaServerEngine
        from app.engines.local import EngineConfig

        gpu_layers = EngineConfig(path, n_gpu_layers=layers).resolved_gpu_layers()
        return LlamaServerEngine.start(path, spec.slots, spec.n_ctx, spec.threads, gpu_layers,
                                       on_progress=on_hash_progress, on_build_progress=on_build_progress)
    from app.engines.local import LocalEngine

    return LocalEngine.load(path, on_hash_progress, n_gpu_layers=layers, n_ctx=spec.n_ctx, n_threads=spec.threads)
