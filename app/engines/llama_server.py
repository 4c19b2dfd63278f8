"""The ``llama-server`` engine: llama.cpp's own server, built from the pinned source, run as a child.

It serves ``parallel`` requests at once with continuous batching and its prompt cache. Prompts are
rendered here with the GGUF's own chat template, bounded (as on the local engine, so both engines
see the same prompt), and completed through the server's OpenAI-compatible API. The supervisor
(:mod:`app.engines.server_process`) restarts a server that dies; the request whose answer was cut
gets a clear error, and the next one waits for the restarted server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx

from app.engines.base import EngineUnavailable, GenerationStats, Sampling
from app.engines.chat_template import ChatTemplate, render_messages
from app.engines.devices import describe_device
from app.engines.options import default_threads
from app.engines.remote import Endpoint, ServedEngine
from app.engines.server_build import BuildOptions, ensure_llama_server
from app.engines.server_process import LlamaServerProcess, ServerSettings
from app.hashing import HashProgress
from app.model_card import read_model_card

RESTART_WAIT_S = 60.0


class LlamaServerEngine(ServedEngine):
    """A GGUF served by a supervised llama-server child process on a loopback port."""

    kind = backend = "llama-server"

    def __init__(self, process: LlamaServerProcess, model_path: Path,
                 on_hash_progress: HashProgress | None = None) -> None:
        card = read_model_card(model_path, on_hash_progress)
        self.process = process
        settings = process.settings
        self.gpu_layers = settings.gpu_layers
        self.n_threads = settings.threads or default_threads()
        super().__init__(Endpoint(f"{process.base_url}/v1", process.api_key), slots=settings.parallel)
        self.card = card
        self.backend_version = f"llama-server {process.version}"
        self.chat_template = (
            ChatTemplate(card.chat_template, bos_token=str(self.props.get("bos_token") or ""),
                         eos_token=str(self.props.get("eos_token") or ""))
            if card.chat_template
            else None
        )

    @classmethod
    def start(cls, model_path: Path, parallel: int, n_ctx: int, threads: int | None, gpu_layers: int,
              on_progress: HashProgress | None = None,
              on_build_progress: Callable[[str], None] | None = None) -> LlamaServerEngine:
        """Build (once, cached; GGML options from ``$CMAKE_ARGS``, as for llama-cpp-python) and start
        llama-server for ``model_path``; ``n_ctx`` is per request."""
        binary = ensure_llama_server(BuildOptions.from_environment(), on_progress=on_build_progress)
        process = LlamaServerProcess(binary, ServerSettings(model_path=model_path, parallel=parallel, n_ctx=n_ctx,
                                                            threads=threads, gpu_layers=gpu_layers))
        process.start()
        try:
            return cls(process, model_path, on_progress)
        except BaseException:
            process.stop()
            raise

    @property
    def device(self) -> str:
        return describe_device(self.gpu_layers, self.n_threads)

    def render_chat(self, messages: Sequence[dict[str, str]], cancel: threading.Event | None = None,
                    thinking: bool | None = None) -> tuple[str, tuple[str, ...]]:
        return render_messages(self.chat_template, messages, cancel, thinking)

    def _failure(self, exc: Exception) -> EngineUnavailable:
        if isinstance(exc, httpx.TimeoutException):
            return super()._failure(exc)
        return EngineUnavailable(
            "The llama-server engine stopped while answering; it is being restarted. "
            "Ask again in a few seconds (your question was not answered).")

    def _generate(self, prompt: str, sampling: Sampling, cancel: threading.Event | None,
                  stats: GenerationStats, conversation: str | None = None) -> Iterator[str]:
        try:
            return super()._generate(prompt, sampling, cancel, stats, conversation)
        except EngineUnavailable:  # not started yet: the server is restarting; wait for it once
            if not self.recover(RESTART_WAIT_S):
                raise
            return super()._generate(prompt, sampling, cancel, stats, conversation)

    def tokenize(self, text: str, special: bool = True) -> list[int]:
        try:
            return super().tokenize(text, special)
        except EngineUnavailable:
            if not self.recover(RESTART_WAIT_S):
                raise
            return super().tokenize(text, special)

    def recover(self, timeout_s: float) -> bool:
        return self.process.wait_healthy(timeout_s)

    def close(self) -> None:
        super().close()
        self.process.stop()
