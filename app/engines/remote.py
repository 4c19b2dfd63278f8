"""The ``openai`` engine: a model served by any OpenAI-compatible endpoint (vLLM, llama-server, Ollama).

Raw completions go to ``/v1/completions`` and chats to ``/v1/chat/completions``, streamed as
server-sent events; closing the stream (Stop, a cancel, a client gone) ends the request on the
server. Prompt length: raw prompts are counted with the server's ``/tokenize`` where it has one
(llama-server, vLLM) and refused before generating; a chat the server finds too long is refused by
the server before generating, and both give the same :class:`PromptTooLong` message. Every failure
names the endpoint: down, wrong key, wrong model id, timeout, an answer cut off.

Patient text crosses the network here, so plain ``http://`` is accepted only to a loopback host
unless the caller allows it explicitly (``--allow-plain-http``).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.engines.base import (
    ChatOptions,
    Engine,
    EngineError,
    EngineUnavailable,
    Generation,
    GenerationStats,
    PromptTooLong,
    Sampling,
)
from app.engines.options import DEFAULT_CONTEXT
from app.gguf_metadata import printable
from app.model_card import ModelCard
from app.security import is_loopback

CONNECT_TIMEOUT_S = 5.0
DEFAULT_TIMEOUT_S = 300.0  # the longest wait for the next piece of an answer
MAX_ERROR_CHARS = 300
_PROMPT_FIRST = (  # (prompt tokens, context) in llama-server's and JMedLLM Desk's context errors
    re.compile(r"request \((\d+) tokens\) exceeds the available context size \((\d+)"),
    re.compile(r"The prompt is (\d+) tokens long, but the model's context window is (\d+)"),
)
_CONTEXT_FIRST = re.compile(r"maximum context length is (\d+) tokens.*?(\d+) tokens", re.S)  # vLLM's


class EndpointError(EngineError):
    """An endpoint URL or key setting that cannot be used."""


def checked_url(url: str, allow_plain_http: bool = False) -> str:
    """``url`` without a trailing slash, if it can carry patient text: https, or http to loopback
    (or anywhere with ``allow_plain_http``)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointError(f"The engine URL must be http(s)://HOST[:PORT]/v1, not {url!r}.")
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not allow_plain_http:
        raise EndpointError(
            f"{url} is plain http to another machine: patient text would cross the network unencrypted. "
            "Use https, or pass --allow-plain-http if the hospital network is trusted for this.")
    return url.strip().rstrip("/")


@dataclass(frozen=True)
class Endpoint:
    """Where the model is served: base URL (ending in /v1), API key, model id (None: the one it serves)."""

    url: str
    api_key: str | None = None
    model: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def root(self) -> str:
        """The server's root URL (where llama-server and vLLM keep /tokenize, /health, /props)."""
        return self.url.removesuffix("/v1")


def remote_card(endpoint: Endpoint, model_id: str, n_ctx: int, meta: dict[str, Any]) -> ModelCard:
    """The card of a model seen only through its endpoint; its "sha256" identifies endpoint and model
    id (the file itself is not visible from here)."""
    identity = hashlib.sha256(f"openai|{endpoint.url}|{model_id}".encode()).hexdigest()
    return ModelCard(
        path=endpoint.url, file_name=printable(model_id)[:200], file_size=int(meta.get("size") or 0),
        sha256=identity, architecture="remote", name=printable(model_id)[:200], size_label="",
        quantization="set by the server", context_length=n_ctx, parameters=int(meta.get("n_params") or 0),
        chat_template=None, endpoint=endpoint.url,
    )


class ServedEngine(Engine):
    """A model behind an OpenAI-compatible HTTP server, with ``slots`` requests in flight at most.

    Raw completions go to the server; how chats are templated is the subclass's choice.
    """

    def __init__(self, endpoint: Endpoint, slots: int = 4, n_ctx: int | None = None) -> None:
        super().__init__(slots)
        self.endpoint = endpoint
        headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        self._http = httpx.Client(headers=headers, limits=httpx.Limits(max_connections=slots + 4),
                                  timeout=httpx.Timeout(endpoint.timeout_s, connect=CONNECT_TIMEOUT_S),
                                  trust_env=not is_loopback(urlsplit(endpoint.url).hostname or ""))  # no proxy
        # for a server on this machine; one elsewhere may sit behind the hospital's proxy
        self._can_tokenize = True
        listed = self._request("GET", f"{endpoint.url}/models").get("data") or []
        ids = [str(m.get("id")) for m in listed if isinstance(m, dict)]
        self.model_id = self._choose_model(ids)
        entry = next(m for m in listed if str(m.get("id")) == self.model_id)
        self.model_meta: dict[str, Any] = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
        self.props = self._props()  # llama-server's properties, asked once ({} from other servers)
        self._n_ctx = n_ctx or self._served_context(entry) or DEFAULT_CONTEXT
        self.backend_version = self._server_version()

    def _choose_model(self, ids: list[str]) -> str:
        wanted = self.endpoint.model
        if not ids:
            raise EngineUnavailable(f"The engine at {self.endpoint.url} serves no model (GET /v1/models is empty).")
        if wanted is None:
            return ids[0]
        if wanted not in ids:
            raise EngineUnavailable(f"The engine at {self.endpoint.url} does not serve the model {wanted!r}; it "
                                    f"serves: {', '.join(printable(i) for i in ids[:10])}.")
        return wanted

    def _served_context(self, entry: dict[str, Any]) -> int | None:
        """The per-request context: vLLM's ``max_model_len``, JMedLLM Desk's ``meta.n_ctx``, or
        llama-server's slot context from /props."""
        for value in (entry.get("max_model_len"), self.model_meta.get("n_ctx")):
            if isinstance(value, int) and value > 0:
                return value
        n_ctx = (self.props.get("default_generation_settings") or {}).get("n_ctx")
        return int(n_ctx) if isinstance(n_ctx, int) and n_ctx > 0 else None

    def _props(self) -> dict[str, Any]:
        """llama-server's /props ({} from servers that have none)."""
        try:
            return self._request("GET", f"{self.endpoint.root}/props")
        except EngineUnavailable:
            return {}

    def _server_version(self) -> str:
        build = self.props.get("build_info")
        return f"llama-server {build}" if build else f"OpenAI-compatible server at {self.endpoint.url}"

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def device(self) -> str:
        return f"server: {self.endpoint.url}"

    def close(self) -> None:
        self._http.close()

    def recover(self, timeout_s: float) -> bool:
        """Wait until the server lists its models again (after a restart or an outage)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self._request("GET", f"{self.endpoint.url}/models")
                return True
            except EngineUnavailable:
                time.sleep(1.0)
        return False

    # --- HTTP ---------------------------------------------------------------------------------------

    def _failure(self, exc: Exception) -> EngineUnavailable:
        """What went wrong talking to the endpoint, in words that name it."""
        url = self.endpoint.url
        if isinstance(exc, httpx.TimeoutException):
            return EngineUnavailable(f"The engine at {url} did not answer within {self.endpoint.timeout_s:g} s.")
        if isinstance(exc, httpx.ConnectError):
            return EngineUnavailable(f"Cannot reach the engine at {url}: is the server running? ({exc})")
        return EngineUnavailable(f"The connection to the engine at {url} broke off ({type(exc).__name__}).")

    def _refusal(self, response: httpx.Response) -> EngineError:
        """The error for a non-2xx answer: key, model, context or the server's own message."""
        url = self.endpoint.url
        try:
            body = response.read().decode("utf-8", errors="replace")
            error = json.loads(body).get("error", body)
        except (ValueError, AttributeError, httpx.HTTPError):
            error = ""
        message = printable(str(error.get("message", "") if isinstance(error, dict) else error))[:MAX_ERROR_CHARS]
        if response.status_code in (401, 403):
            return EngineUnavailable(f"The engine at {url} refused the API key (HTTP {response.status_code}); "
                                     "check --engine-key-file.")
        if response.status_code == 404 and "model" in message.lower():
            return EngineUnavailable(f"The engine at {url} does not serve the model {self.model_id!r}: {message}")
        for pattern in _PROMPT_FIRST:
            if found := pattern.search(message):
                return PromptTooLong(int(found[1]), int(found[2]))
        if found := _CONTEXT_FIRST.search(message):
            return PromptTooLong(int(found[2]), int(found[1]))
        return EngineUnavailable(f"The engine at {url} answered HTTP {response.status_code}: "
                                 f"{message or '(no message)'}")

    def _request(self, method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._http.request(method, url, json=body)
        except httpx.HTTPError as exc:
            raise self._failure(exc) from exc
        if response.status_code >= 400:
            raise self._refusal(response)
        try:
            data = response.json()
        except ValueError:
            raise EngineUnavailable(f"The engine at {self.endpoint.url} answered {url} with something that is "
                                    "not JSON.") from None
        return data if isinstance(data, dict) else {}

    def _open(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """Send a streamed request and check its status: a refusal raises here, before any text."""
        request = self._http.build_request("POST", f"{self.endpoint.url}{path}", json=body)
        try:
            response = self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._failure(exc) from exc
        if response.status_code >= 400:
            try:
                raise self._refusal(response)
            finally:
                response.close()
        return response

    def _events(self, response: httpx.Response, cancel: threading.Event | None) -> Iterator[dict[str, Any]]:
        """The server-sent events of an opened response, until [DONE] or a cancel; closing the response
        (here or by the caller stopping) ends the request on the server."""
        try:
            for line in response.iter_lines():
                if cancel is not None and cancel.is_set():
                    return
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    return
                event = json.loads(payload)
                if isinstance(event, dict) and "error" in event:
                    raise EngineUnavailable(f"The engine at {self.endpoint.url} stopped the answer: "
                                            f"{printable(str(event['error']))[:MAX_ERROR_CHARS]}")
                if isinstance(event, dict):
                    yield event
        except httpx.HTTPError as exc:
            raise self._failure(exc) from exc
        except json.JSONDecodeError:
            raise EngineUnavailable(f"The engine at {self.endpoint.url} sent an event that is not JSON.") from None
        finally:
            response.close()

    # --- the engine interface ----------------------------------------------------------------------

    def tokenize(self, text: str, special: bool = True) -> list[int]:
        """The server's tokens for ``text`` (llama-server's and vLLM's /tokenize); [] where it has none."""
        if not self._can_tokenize:
            return []
        try:
            data = self._request("POST", f"{self.endpoint.root}/tokenize",
                                 {"content": text, "prompt": text, "model": self.model_id,
                                  "add_special": True, "parse_special": special})
        except EngineUnavailable as exc:
            if "HTTP 404" in str(exc) or "HTTP 405" in str(exc):
                self._can_tokenize = False  # counted by the server instead: it refuses too-long prompts
                return []
            raise
        return [t if isinstance(t, int) else t.get("id", 0) for t in data.get("tokens", [])]

    def _sampling_fields(self, sampling: Sampling) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "model": self.model_id, "max_tokens": sampling.max_tokens, "temperature": sampling.temperature,
            "top_p": sampling.top_p, "seed": sampling.seed, "stream": True,
            "stream_options": {"include_usage": True},
        }
        if sampling.stop:
            fields["stop"] = list(sampling.stop)[:4]  # the OpenAI API takes at most four
        # llama-server's and vLLM's extensions, sent so that the server's own defaults (top_k 40,
        # min_p 0.05) do not apply; greedy is top_k 1 (the same token, without sorting the vocabulary)
        fields["top_k"] = 1 if sampling.temperature == 0 else sampling.top_k
        fields["min_p"] = 0.0
        if sampling.repeat_penalty != 1.0:
            fields["repeat_penalty"] = sampling.repeat_penalty  # llama-server's and vLLM's extension
        return fields

    def _generate(self, prompt: str, sampling: Sampling, cancel: threading.Event | None,
                  stats: GenerationStats, conversation: str | None = None) -> Iterator[str]:
        """``conversation`` is unused: a server reuses evaluated prompts itself (llama-server's prompt cache)."""
        response = self._open("/completions", {"prompt": prompt, **self._sampling_fields(sampling)})
        return self._pieces(response, cancel, stats)

    def _pieces(self, response: httpx.Response, cancel: threading.Event | None,
                stats: GenerationStats) -> Iterator[str]:
        """The answer's text pieces from the opened ``response``; ``stats`` filled from its events."""
        start = time.perf_counter()
        finish = "length"
        counted = 0
        try:
            for event in self._events(response, cancel):
                if usage := event.get("usage"):
                    stats.prompt_tokens = int(usage.get("prompt_tokens") or stats.prompt_tokens)
                    stats.completion_tokens = int(usage.get("completion_tokens") or counted)
                for choice in event.get("choices") or []:
                    text = choice.get("text") or (choice.get("delta") or {}).get("content") or ""
                    if text:
                        counted += 1
                        if stats.first_token_seconds is None:
                            stats.first_token_seconds = time.perf_counter() - start
                        stats.completion_tokens = max(stats.completion_tokens, counted)
                        yield text
                    if reason := choice.get("finish_reason"):
                        finish = reason
            stats.finish_reason = "cancelled" if cancel is not None and cancel.is_set() else finish
        except GeneratorExit:
            stats.finish_reason = "cancelled"
            raise
        finally:
            stats.seconds = time.perf_counter() - start


class OpenAIEngine(ServedEngine):
    """A model served by any OpenAI-compatible endpoint, which also templates the chats."""

    kind = backend = "openai"

    def __init__(self, endpoint: Endpoint, slots: int = 4, n_ctx: int | None = None) -> None:
        super().__init__(endpoint, slots, n_ctx)
        self.card = remote_card(endpoint, self.model_id, self.n_ctx, self.model_meta)

    def stream_chat(self, messages: Sequence[dict[str, str]], sampling: Sampling = Sampling(),
                    cancel: threading.Event | None = None, wait: bool = False,
                    options: ChatOptions = ChatOptions()) -> Generation:
        """Answer ``messages`` with the server's own chat template (``/v1/chat/completions``); thinking
        on or off goes as ``chat_template_kwargs`` (vLLM's and llama-server's)."""
        hold = self.slot(blocking=wait)
        stats = GenerationStats()
        body: dict[str, Any] = {"messages": list(messages), **self._sampling_fields(sampling)}
        if options.thinking is not None:
            body["chat_template_kwargs"] = {"enable_thinking": options.thinking}
        try:
            response = self._open("/chat/completions", body)
        except BaseException:
            hold.release()
            raise
        return Generation(self._pieces(response, cancel, stats), stats, hold.release)

