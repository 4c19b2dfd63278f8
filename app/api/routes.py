"""The OpenAI-compatible API at ``/v1``: models, chat completions and completions, on the UI's port.

Every request is checked in the same order: API key (throttled per address), body size, JSON
fields, model name, then a place in the admission gate; only then does the engine see it. The
engine is read from the app state at request time (the Model tab may replace it). A client that
goes away stops its generation within a token or two and frees its slot. Each request is logged
at INFO with its key id, address, endpoint, token counts and finish reason, never its text.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from app.api.admission import Admission, QueueFull
from app.api.schemas import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    Options,
    Reply,
    finish_reason,
    parse_chat,
    parse_completion,
    parse_json,
    provenance,
)
from app.api.sse import DONE, EventStream, event
from app.engines.base import Engine, EngineError, Generation, GenerationStats, NotSupported, PromptTooLong
from app.security import FailureDelay, Throttle, lockout_message
from app.ui.state import AppState

MAX_BODY_BYTES = 1024 * 1024
RETRY_AFTER_S = 2
DISCONNECT_POLL_S = 0.2
CLIENT_GONE = 499  # logged status of a request whose client went away (nginx's convention)

T = TypeVar("T")
ParsedRequest = ChatRequest | CompletionRequest

log = logging.getLogger(__name__)


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


def _unauthorized(message: str, retry_after: float | None = None) -> ApiError:
    headers = {"WWW-Authenticate": "Bearer"}
    if retry_after is not None:
        headers["Retry-After"] = str(math.ceil(retry_after))
    return ApiError(401, message, "authentication_error", code="invalid_api_key", headers=headers)


def _internal_error(exc: Exception) -> ApiError:
    """A failure of this server while answering (a bug, not the request's fault): logged with its traceback,
    answered as an OpenAI-shaped 500 that tells the client nothing of the server's insides."""
    log.error("the answer failed", exc_info=exc)
    return ApiError(500, "The server failed while answering; its administrator can find why in its log.",
                    "server_error", code="internal_error")


def _engine_error(exc: EngineError, prompt_param: str) -> ApiError:
    """The HTTP face of an engine's refusal: 400 for the request's fault, 503 when the engine cannot serve.
    ``prompt_param``: the field that held the prompt ("messages" or "prompt"), named when it is too long."""
    if isinstance(exc, PromptTooLong):
        return ApiError(400, str(exc), param=prompt_param, code="context_length_exceeded")
    if isinstance(exc, NotSupported):
        return ApiError(400, str(exc), code="not_supported")
    return ApiError(503, str(exc), "server_error", code="engine_unavailable")


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with 413 beyond ``limit`` bytes (declared or counted: chunked bodies too)."""
    too_large = ApiError(413, f"The request body is larger than {limit:,} bytes.", code="request_too_large")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise ClientGone() from exc
    return b"".join(chunks)


async def watch(request: Request, task: asyncio.Future[T], on_gone: Callable[[], object]) -> T:
    """``task``'s result, watching the client meanwhile: once it has gone, ``on_gone`` runs (once)."""
    gone = False
    while not task.done():
        await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
        if not gone and not task.done() and await request.is_disconnected():
            gone = True
            on_gone()
    if task.cancelled():
        raise ClientGone()
    return task.result()


def run_to_end(start: Callable[[], Generation]) -> Generation:
    """Start a generation and run it to its end (or its cancel), freeing its slot however it ends."""
    generation = start()
    try:
        generation.result()
    finally:
        generation.close()
    return generation


@dataclass
class Audit:
    """What the log keeps of one API request (never its prompt or answer)."""

    endpoint: str
    address: str
    key_id: str | None = None

    def log(self, status: int, stats: GenerationStats | None = None, finish: str = "-") -> None:
        stats = stats or GenerationStats()
        log.info("api %s: status=%d key=%s address=%s prompt_tokens=%d completion_tokens=%d finish=%s",
                 self.endpoint, status, self.key_id or "-", self.address, stats.prompt_tokens,
                 stats.completion_tokens, finish)


class Api:
    """The handlers, sharing the app state, the admission gate and the failed-key throttle."""

    def __init__(self, state: AppState, failure_delay: FailureDelay) -> None:
        self.state = state
        self.admission = Admission(lambda: state.engine.slots)
        self.throttle = Throttle()
        self.failure_delay = failure_delay

    async def authorize(self, request: Request, address: str) -> str | None:
        """The key id of the request's bearer key (None where the API is open); 401 otherwise."""
        options = self.state.options
        if not options.api_key_required:
            return None
        api_keys = self.state.api_keys()
        if api_keys is None:
            raise _unauthorized("This server has no API keys: restart it with --api-key-file FILE or "
                                "$JMEDLLM_API_KEYS to use the API.")
        throttle_key = f"api-address:{address}"
        locked_s = self.throttle.seconds_locked(throttle_key)
        if locked_s > 0:
            log.warning("API key refused (locked out): address=%s", address)
            raise _unauthorized(lockout_message("API keys", locked_s), retry_after=locked_s)
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise _unauthorized("Missing API key: send the header Authorization: Bearer KEY.")
        key_id = api_keys.verify(presented.strip())
        if key_id is None:
            log.warning("wrong API key: address=%s", address)
            for key in self.throttle.fail(throttle_key):
                log.warning("locked out for %.0f minutes after %d wrong API keys: %s",
                            self.throttle.lockout_s / 60, self.throttle.max_failures, key)
            await self.failure_delay.wait()
            raise _unauthorized("Invalid API key.")
        return key_id

    async def models(self, request: Request) -> Response:
        audit = Audit("models", _address(request))
        try:
            audit.key_id = await self.authorize(request, audit.address)
        except ApiError as exc:
            return _refused(audit, exc)
        loaded = self.state.loaded
        engine = loaded.engine
        card = engine.card
        meta = {"file": card.file_name, "sha256": card.sha256, "quantization": card.quantization,
                "backend": engine.backend, "slots": engine.slots, "n_ctx": engine.n_ctx}
        model = {"id": card.file_name, "object": "model", "owned_by": "jmedllm", "meta": meta,
                 "created": int(dt.datetime.fromisoformat(loaded.loaded_at).timestamp())}
        audit.log(200)
        return JSONResponse({"object": "list", "data": [model]})

    async def unknown(self, request: Request) -> Response:
        """Any other path or method under ``/v1``: an OpenAI-shaped 404, worded as OpenAI words it."""
        return _refused(Audit("unknown", _address(request)),
                        ApiError(404, f"Invalid URL ({request.method} {request.url.path}).", code="unknown_url"))

    async def chat(self, request: Request) -> Response:
        return await self.generate(request, "chat/completions", parse_chat)

    async def completions(self, request: Request) -> Response:
        return await self.generate(request, "completions", parse_completion)

    async def generate(self, request: Request, endpoint: str,
                       parse: Callable[[dict[str, Any], int], ParsedRequest]) -> Response:
        """Check the request, wait for a slot, and answer it whole or as a stream."""
        audit = Audit(endpoint, _address(request))
        try:
            audit.key_id = await self.authorize(request, audit.address)
            data = parse_json(await read_body(request))
            engine = self.state.engine
            parsed = parse(data, engine.n_ctx)
            _check_model(parsed.options, engine)
            await self._enter(request)
        except ApiError as exc:
            return _refused(audit, exc)
        except ClientGone:
            audit.log(CLIENT_GONE)
            return Response(status_code=CLIENT_GONE)
        cancel = threading.Event()
        start = _starter(engine, parsed, cancel)
        reply = Reply(isinstance(parsed, ChatRequest), engine.card.file_name)
        if parsed.options.stream:
            return await self._stream(request, audit, engine, reply, parsed.options, start, cancel)
        try:
            generation = await self._in_thread(request, cancel, lambda: run_to_end(start), reply.prompt_param)
        except ApiError as exc:
            return _refused(audit, exc)
        except ClientGone:
            audit.log(CLIENT_GONE, finish="cancelled")
            return Response(status_code=CLIENT_GONE)
        finally:
            self.admission.leave()
        audit.log(200, generation.stats, generation.stats.finish_reason)
        return JSONResponse(reply.body(generation, engine.card))

    async def _enter(self, request: Request) -> None:
        """A place in the admission gate: 429 when the queue is full, :class:`ClientGone` if the client leaves."""
        task = asyncio.ensure_future(self.admission.enter())
        try:
            await watch(request, task, task.cancel)
        except QueueFull as exc:
            raise ApiError(429, str(exc), "rate_limit_error", code="rate_limit_exceeded",
                           headers={"Retry-After": str(RETRY_AFTER_S)}) from exc

    @staticmethod
    async def _in_thread(request: Request, cancel: threading.Event, work: Callable[[], Generation],
                         prompt_param: str) -> Generation:
        """``work()`` in a worker thread; a client that leaves sets ``cancel`` (the engine stops within a token)."""
        try:
            generation = await watch(request, asyncio.ensure_future(run_in_threadpool(work)), cancel.set)
        except EngineError as exc:
            raise _engine_error(exc, prompt_param) from exc
        except Exception as exc:
            raise _internal_error(exc) from exc
        if cancel.is_set():
            generation.close()
            raise ClientGone()
        return generation

    async def _stream(self, request: Request, audit: Audit, engine: Engine, reply: Reply, options: Options,
                      start: Callable[[], Generation], cancel: threading.Event) -> Response:
        """Start the generation, then stream it as server-sent events (errors before the first token: JSON)."""
        try:
            generation = await self._in_thread(request, cancel, start, reply.prompt_param)
        except BaseException as exc:
            self.admission.leave()
            if isinstance(exc, ClientGone):
                audit.log(CLIENT_GONE, finish="cancelled")
                return Response(status_code=CLIENT_GONE)
            if isinstance(exc, ApiError):
                return _refused(audit, exc)
            raise

        def close() -> None:
            cancel.set()
            generation.close()
            self.admission.leave()
            audit.log(200, generation.stats, generation.stats.finish_reason)

        return EventStream(_events(reply, generation, engine, options.include_usage), close)


async def _events(reply: Reply, generation: Generation, engine: Engine, include_usage: bool) -> AsyncIterator[str]:
    """The stream: the role (chat), a chunk per piece of text, the finish reason, the usage if asked, [DONE]."""
    if reply.chat:
        yield event(reply.chunk(role=True))
    try:
        async for piece in iterate_in_threadpool(generation):
            if piece:
                yield event(reply.chunk(piece))
    except EngineError as exc:
        yield event(_engine_error(exc, reply.prompt_param).body())
        return
    except Exception as exc:  # the stream ends with an error event, not a cut connection
        yield event(_internal_error(exc).body())
        return
    yield event(reply.chunk(finish=finish_reason(generation.stats)) | {"jmedllm": provenance(engine.card)})
    if include_usage:
        yield event(reply.usage_chunk(generation.stats))
    yield DONE


def _starter(engine: Engine, parsed: ParsedRequest, cancel: threading.Event) -> Callable[[], Generation]:
    """The blocking call that starts the generation once a slot is free."""
    sampling = parsed.options.sampling
    if isinstance(parsed, ChatRequest):
        messages = parsed.messages
        return lambda: engine.stream_chat(messages, sampling, cancel, wait=True)
    prompt = parsed.prompt
    return lambda: engine.stream(prompt, sampling, cancel, wait=True)


def _check_model(options: Options, engine: Engine) -> None:
    if options.model is not None and options.model != engine.card.file_name:
        raise ApiError(404, f"The model {options.model} is not served here; GET /v1/models lists it.",
                       param="model", code="model_not_found")


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _refused(audit: Audit, exc: ApiError) -> JSONResponse:
    audit.log(exc.status, finish=exc.code or "-")
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def api_router(state: AppState, failure_delay: FailureDelay) -> APIRouter:
    """The ``/v1`` routes, answering with ``state.engine``; include it before the UI's mount at ``/``.
    ``failure_delay``: the server's one line for wrong guesses, shared with the login."""
    api = Api(state, failure_delay)
    router = APIRouter(prefix="/v1")
    router.add_api_route("/models", api.models, methods=["GET"])
    router.add_api_route("/chat/completions", api.chat, methods=["POST"])
    router.add_api_route("/completions", api.completions, methods=["POST"])
    router.add_api_route("/{path:path}", api.unknown, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    return router

