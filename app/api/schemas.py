"""The API's wire format, both ways: OpenAI-shaped requests checked into plain dataclasses, and
OpenAI-shaped responses, stream chunks and errors built from a generation's text and stats.

Unknown request fields are ignored, as OpenAI-compatible servers do; a field this server cannot
honour (``n`` other than 1, tools, log-probabilities, echo, JSON output formats, token-array
prompts) is refused with a 400 naming it.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.engines.base import DEFAULT_SEED, Generation, GenerationStats, Sampling
from app.errors import UserError
from app.model_card import ModelCard
from app.qa import DEFAULT_MAX_TOKENS, MAX_QUESTION_CHARS, is_unicode

MAX_MESSAGES = 200
MAX_STOPS = 8
MAX_TOKENS_CAP = 8192  # with the context window: a request may ask for at most min(this, n_ctx) tokens
ROLES = ("system", "developer", "user", "assistant")  # "developer": OpenAI's newer name for "system"
NOTICE = "Decision support, not a diagnosis."
DEMO_NOTICE = "Demo model: not for clinical use."
INVALID_REQUEST = "invalid_request_error"


class ApiError(UserError):
    """A request refused with an OpenAI-shaped error: HTTP ``status``, ``message``, ``type``, ``param``, ``code``."""

    def __init__(self, status: int, message: str, type: str = INVALID_REQUEST, param: str | None = None,
                 code: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def parse_json(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object."""
    try:
        data = json.loads(body)
    except ValueError as exc:  # also bytes that are not UTF-8
        raise _invalid(f"The request body is not valid JSON: {exc}", code="invalid_json") from exc
    except RecursionError as exc:
        raise _invalid("The request body is not valid JSON: it is nested too deeply.", code="invalid_json") from exc
    if not isinstance(data, dict):
        raise _invalid("The request body must be a JSON object.", code="invalid_json")
    return data


def _text(value: object, param: str, limit: int | None = None) -> str:
    if not isinstance(value, str):
        raise _invalid(f"{param} must be a string.", param)
    if not is_unicode(value):
        raise _invalid(f"{param} is not valid Unicode text (it holds a lone surrogate).", param)
    if limit is not None and len(value) > limit:
        raise _invalid(f"{param} is {len(value):,} characters; the limit is {limit:,}.", param,
                       "string_above_max_length")
    return value


def _number(data: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _invalid(f"{name} must be a number from {low:g} to {high:g}.", name)
    return float(value)


def _integer(data: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(f"{name} must be a whole number from {low} to {high}.", name)
    return value


def _boolean(data: Mapping[str, Any], name: str) -> bool:
    value = data.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid(f"{name} must be true or false.", name)
    return value


def _stops(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or len(stops) > MAX_STOPS or not all(isinstance(s, str) and s for s in stops):
        raise _invalid(f"stop must be a non-empty string or a list of at most {MAX_STOPS} of them.", "stop")
    return tuple(_text(stop, "stop", MAX_QUESTION_CHARS) for stop in stops)


def _content(value: object, param: str) -> str:
    """A message's content: a string, or a list of ``{"type": "text", "text": ...}`` parts (joined by newlines)."""
    if isinstance(value, list):
        if not all(isinstance(part, dict) and part.get("type") == "text" and "text" in part for part in value):
            raise _invalid(f"{param}: only text parts are supported ({{\"type\": \"text\", \"text\": ...}}).", param)
        value = "\n".join(_text(part["text"], f"{param}.text") for part in value)
    return _text(value, param, MAX_QUESTION_CHARS)


def _messages(value: object) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise _invalid("messages must be a non-empty list of {\"role\", \"content\"} objects.", "messages")
    if len(value) > MAX_MESSAGES:
        raise _invalid(f"{len(value)} messages; the limit is {MAX_MESSAGES}.", "messages")
    messages = []
    for index, message in enumerate(value):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _invalid(f"{param} must be an object with a role and a content.", param)
        role = message.get("role")
        if role not in ROLES:
            raise _invalid(f"{param}.role must be one of {', '.join(ROLES)}.", f"{param}.role")
        messages.append({"role": "system" if role == "developer" else role,
                         "content": _content(message.get("content"), f"{param}.content")})
    return tuple(messages)


def _prompt(value: object) -> str:
    """A completion prompt: a string, or a list of exactly one string."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        value = value[0]
    if not isinstance(value, str):
        raise _invalid("prompt must be a string (token arrays and batches of prompts are not supported).", "prompt")
    if not value:
        raise _invalid("prompt must not be empty.", "prompt")
    return _text(value, "prompt")


def _refuse_unsupported(data: Mapping[str, Any]) -> None:
    if data.get("n") not in (None, 1):
        raise _invalid("Only n=1 is supported: one answer per request.", "n")
    for name in ("tools", "functions"):
        if data.get(name):
            raise _invalid(f"{name} (function calling) is not supported by this server.", name)
    for name in ("logprobs", "top_logprobs", "echo", "suffix"):
        if data.get(name):
            raise _invalid(f"{name} is not supported by this server.", name)
    if data.get("best_of") not in (None, 1):
        raise _invalid("Only best_of=1 is supported: one answer per request.", "best_of")
    if data.get("response_format") not in (None, {"type": "text"}):
        raise _invalid('Only response_format {"type": "text"} is supported: answers are plain text.',
                       "response_format")


@dataclass(frozen=True)
class Options:
    """What every generation request shares: the model named, sampling, and how to answer."""

    model: str | None
    sampling: Sampling
    stream: bool
    include_usage: bool


def _options(data: Mapping[str, Any], n_ctx: int) -> Options:
    _refuse_unsupported(data)
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise _invalid("model must be a string.", "model")
    cap = min(MAX_TOKENS_CAP, n_ctx)
    name = "max_completion_tokens" if data.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _integer(data, name, 1, 2**31 - 1)
    if max_tokens is not None and max_tokens > cap:
        raise _invalid(f"{name} is {max_tokens}; this server allows at most {cap} (the model's context window is "
                       f"{n_ctx} tokens).", name, "max_tokens_too_large")
    seed = _integer(data, "seed", 0, 2**32 - 1)
    stream_options = data.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise _invalid("stream_options must be an object.", "stream_options")
    sampling = Sampling(
        max_tokens=max_tokens if max_tokens is not None else min(DEFAULT_MAX_TOKENS, cap),
        temperature=_number(data, "temperature", 0.0, 0.0, 2.0),
        top_p=_number(data, "top_p", 1.0, 0.0, 1.0),
        seed=DEFAULT_SEED if seed is None else seed,
        stop=_stops(data.get("stop")),
    )
    return Options(model, sampling, _boolean(data, "stream"), _boolean(stream_options or {}, "include_usage"))


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[dict[str, str], ...]
    options: Options


@dataclass(frozen=True)
class CompletionRequest:
    prompt: str
    options: Options


def parse_chat(data: Mapping[str, Any], n_ctx: int) -> ChatRequest:
    """A ``/v1/chat/completions`` body, checked (``n_ctx`` bounds ``max_tokens``)."""
    return ChatRequest(_messages(data.get("messages")), _options(data, n_ctx))


def parse_completion(data: Mapping[str, Any], n_ctx: int) -> CompletionRequest:
    """A ``/v1/completions`` body, checked (``n_ctx`` bounds ``max_tokens``)."""
    return CompletionRequest(_prompt(data.get("prompt")), _options(data, n_ctx))


def usage(stats: GenerationStats) -> dict[str, int]:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
            "total_tokens": stats.prompt_tokens + stats.completion_tokens}


def finish_reason(stats: GenerationStats) -> str:
    """OpenAI's finish reason: "length" when ``max_tokens`` ended it, else "stop"."""
    return "length" if stats.finish_reason == "length" else "stop"


def provenance(card: ModelCard) -> dict[str, str]:
    """The ``jmedllm`` extension field: which exact model answered, and what its answers are."""
    notice = f"{NOTICE} {DEMO_NOTICE}" if card.is_demo else NOTICE
    return {"model_sha256": card.sha256, "quantization": card.quantization, "notice": notice}


@dataclass(frozen=True)
class Reply:
    """The envelope of one answer: chat (``chat.completion``) or text (``text_completion``) shape."""

    chat: bool
    model: str
    token: str = field(default_factory=lambda: secrets.token_hex(12))
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def prompt_param(self) -> str:
        """The request field that held the prompt, for errors about it."""
        return "messages" if self.chat else "prompt"

    @property
    def id(self) -> str:
        return ("chatcmpl-" if self.chat else "cmpl-") + self.token

    def _envelope(self, object_name: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": object_name, "created": self.created, "model": self.model,
                "choices": choices}

    def body(self, generation: Generation, card: ModelCard) -> dict[str, Any]:
        """The whole answer (``stream: false``)."""
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": generation.text}}
        else:
            choice = {"index": 0, "text": generation.text}
        choice |= {"logprobs": None, "finish_reason": finish_reason(generation.stats)}
        envelope = self._envelope("chat.completion" if self.chat else "text_completion", [choice])
        return envelope | {"usage": usage(generation.stats), "jmedllm": provenance(card)}

    def chunk(self, text: str | None = None, finish: str | None = None, role: bool = False) -> dict[str, Any]:
        """One stream chunk: the role (chat's first chunk), a piece of text, or the finish reason."""
        if self.chat:
            delta: dict[str, str] = {"role": "assistant", "content": ""} if role else {}
            if text is not None:
                delta["content"] = text
            choice: dict[str, Any] = {"index": 0, "delta": delta}
        else:
            choice = {"index": 0, "text": text or ""}
        choice |= {"logprobs": None, "finish_reason": finish}
        return self._envelope("chat.completion.chunk" if self.chat else "text_completion", [choice])

    def usage_chunk(self, stats: GenerationStats) -> dict[str, Any]:
        """The stream's last chunk when ``stream_options.include_usage`` is set: no choices, the usage."""
        return self._envelope("chat.completion.chunk" if self.chat else "text_completion", []) | {
            "usage": usage(stats)}
