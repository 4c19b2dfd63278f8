"""The OpenAI-compatible API through real HTTP: `build_server` under uvicorn, a scripted engine behind it.

One server for the module (the UI and the API on one port, behind the same request guard as
`jmedllm serve`); each test sets its engine and serve options on the shared app state. Tests that
send wrong keys use their own loopback source address, so the failed-key throttle of one test
never touches another. API keys, their files and the start-up refusal are tested without a server.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from app.api.admission import QUEUE_PER_SLOT
from app.api.routes import MAX_BODY_BYTES
from app.api.schemas import DEMO_NOTICE, MAX_TOKENS_CAP, NOTICE
from app.demo_model import DEMO_SHA256
from app.engines.base import EngineUnavailable
from app.security import API_KEYS_ENV, AUTH_ENV, ApiKeys, AuthError, Users, load_api_keys, new_api_key
from app.ui.server import checked_options
from app.ui.state import AppState, ServeOptions
from tests.conftest import app_in_thread, free_port
from tests.scripted_engine import SCRIPTED_CARD, ScriptedEngine

REPLY = "Aspirin inhibits COX-1 and COX-2. アスピリン。"
KEY = new_api_key()
MODEL = SCRIPTED_CARD.file_name


@dataclass
class Served:
    url: str
    state: AppState
    ui_concurrency: int


@pytest.fixture(scope="module")
def served(app_data_dir: Path) -> Iterator[Served]:
    """`build_server` (UI + API) under uvicorn in a thread, wrapped in the request guard as `serve` does."""
    options = ServeOptions(port=free_port(), db_path=app_data_dir / "api.db")
    state = AppState(ScriptedEngine(lambda prompt: REPLY, slots=2), options)
    with app_in_thread(state) as (url, gradio_app):
        yield Served(url, state, gradio_app.get_blocks()._queue.default_concurrency_limit)


def use(served: Served, engine: ScriptedEngine, keys: ApiKeys | None = None) -> ScriptedEngine:
    """Serve ``engine`` next (as the Model tab would load it), with API keys ``keys`` or an open API."""
    served.state.options = replace(served.state.options, api_keys=keys)
    served.state.replace_engine(engine)
    return engine


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    use(served, ScriptedEngine(lambda prompt: REPLY))
    with httpx.Client(base_url=served.url, timeout=30) as client:
        yield client


def chat_body(**fields: object) -> dict[str, object]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "What does aspirin do?"}]} | fields


def events(response: httpx.Response) -> list[str]:
    """The ``data:`` payloads of a server-sent event stream, in order."""
    assert response.headers["content-type"].startswith("text/event-stream")
    return [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]


def test_the_ui_and_the_api_share_the_port_and_the_ui_queue_follows_the_slots(served: Served,
                                                                             http: httpx.Client) -> None:
    assert served.ui_concurrency == 2  # the engine the server started with has two slots
    assert http.get("/").status_code == 200
    assert http.get("/v1/models").status_code == 200


def test_models_lists_the_engine_loaded_now(served: Served, http: httpx.Client) -> None:
    listed = http.get("/v1/models").json()
    assert listed["object"] == "list"
    (model,) = listed["data"]
    assert model["id"] == MODEL and model["object"] == "model" and model["owned_by"] == "jmedllm"
    assert isinstance(model["created"], int)
    assert model["meta"] == {"file": MODEL, "sha256": SCRIPTED_CARD.sha256, "quantization": "none",
                             "backend": "scripted", "slots": 1, "n_ctx": 4096}
    use(served, ScriptedEngine(lambda prompt: REPLY, card=replace(SCRIPTED_CARD, file_name="other.gguf"), slots=3))
    assert [m["id"] for m in http.get("/v1/models").json()["data"]] == ["other.gguf"]
    assert http.post("/v1/chat/completions", json=chat_body(model="other.gguf")).status_code == 200


def test_chat_answers_whole_with_usage_and_provenance(served: Served, http: httpx.Client) -> None:
    engine = served.state.engine
    response = http.post("/v1/chat/completions", json=chat_body(
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": [{"type": "text", "text": "What does"},
                                               {"type": "text", "text": "it do?"}]}]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == MODEL
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "logprobs": None,
                                "finish_reason": "stop"}]
    prompt = "<system>Be brief.\n<user>What does\nit do?\n<assistant>"
    assert engine.prompts == [prompt]  # type: ignore[attr-defined]
    assert body["usage"] == {"prompt_tokens": len(prompt), "completion_tokens": len(REPLY),
                             "total_tokens": len(prompt) + len(REPLY)}
    assert body["jmedllm"] == {"model_sha256": SCRIPTED_CARD.sha256, "quantization": "none", "notice": NOTICE}


def test_the_demo_models_answers_say_they_are_not_for_clinical_use(served: Served, http: httpx.Client) -> None:
    use(served, ScriptedEngine(lambda prompt: REPLY, card=replace(SCRIPTED_CARD, sha256=DEMO_SHA256)))
    body = http.post("/v1/chat/completions", json=chat_body()).json()
    assert body["jmedllm"]["notice"] == f"{NOTICE} {DEMO_NOTICE}"


def test_chat_streams_the_same_answer_then_usage_and_done(http: httpx.Client) -> None:
    body = chat_body(stream=True, stream_options={"include_usage": True}, max_tokens=10)
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        payloads = events(response)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(payload) for payload in payloads[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks if chunk["choices"])
    assert text == REPLY[:10]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-2]["jmedllm"]["model_sha256"] == SCRIPTED_CARD.sha256
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 10


def test_completions_whole_and_streamed(http: httpx.Client) -> None:
    body = http.post("/v1/completions", json={"model": MODEL, "prompt": ["Q: aspirin?\nA:"], "stop": "COX-2"}).json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert body["choices"][0]["text"] == REPLY.split("COX-2")[0]
    assert body["usage"]["prompt_tokens"] == len("Q: aspirin?\nA:")
    with http.stream("POST", "/v1/completions", json={"prompt": "Q: aspirin?\nA:", "stream": True}) as response:
        payloads = events(response)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(payload) for payload in payloads[:-1]]
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == REPLY
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def error(response: httpx.Response, status: int, code: str | None = None) -> str:
    """The message of an OpenAI-shaped error response with ``status`` (and ``code``)."""
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    if code is not None:
        assert body["code"] == code
    return body["message"]


def test_another_model_is_not_found(http: httpx.Client) -> None:
    message = error(http.post("/v1/chat/completions", json=chat_body(model="gpt-4o")), 404, "model_not_found")
    assert message == "The model gpt-4o is not served here; GET /v1/models lists it."
    error(http.post("/v1/completions", json={"model": "gpt-4o", "prompt": "x"}), 404, "model_not_found")


def test_malformed_requests_get_400_with_the_reason(http: httpx.Client) -> None:
    post = http.post
    assert "not valid JSON" in error(post("/v1/chat/completions", content=b"{\"messages\": ["), 400, "invalid_json")
    assert "JSON object" in error(post("/v1/chat/completions", json=[1]), 400)
    assert "non-empty list" in error(post("/v1/chat/completions", json=chat_body(messages=[])), 400)
    assert "non-empty list" in error(post("/v1/chat/completions", json={"model": MODEL}), 400)
    too_many = [{"role": "user", "content": "x"}] * 201
    assert "limit is 200" in error(post("/v1/chat/completions", json=chat_body(messages=too_many)), 400)
    long = [{"role": "user", "content": "x" * 20_001}]
    assert "limit is 20,000" in error(post("/v1/chat/completions", json=chat_body(messages=long)), 400)
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]
    assert "only text parts" in error(post("/v1/chat/completions", json=chat_body(messages=image)), 400)
    assert "role must be" in error(post("/v1/chat/completions", json=chat_body(messages=[{"role": "tool"}])), 400)
    assert "true or false" in error(post("/v1/chat/completions", json=chat_body(stream="yes")), 400)
    assert "from 0 to 2" in error(post("/v1/chat/completions", json=chat_body(temperature=3)), 400)
    assert "n=1" in error(post("/v1/chat/completions", json=chat_body(n=2)), 400)
    assert "token arrays" in error(post("/v1/completions", json={"prompt": [1, 2, 3]}), 400)
    assert "Unicode" in error(post("/v1/completions", content=b'{"prompt": "\\ud800"}'), 400)
    message = error(post("/v1/chat/completions", json=chat_body(max_tokens=MAX_TOKENS_CAP + 1)), 400,
                    "max_tokens_too_large")
    assert "at most 4096" in message
    error(post("/v1/chat/completions", json=chat_body(max_completion_tokens=5000)), 400, "max_tokens_too_large")


def test_json_nested_too_deeply_gets_400_not_a_server_error(http: httpx.Client) -> None:
    nested = b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"  # well under the body limit
    message = error(http.post("/v1/chat/completions", content=nested), 400, "invalid_json")
    assert message == "The request body is not valid JSON: it is nested too deeply."
    assert http.post("/v1/chat/completions", json=chat_body()).status_code == 200


def test_an_empty_completion_prompt_is_refused(served: Served, http: httpx.Client) -> None:
    for body in ({"prompt": ""}, {"prompt": [""], "stream": True}):
        assert error(http.post("/v1/completions", json=body), 400) == "prompt must not be empty."
    assert served.state.engine.prompts == []  # type: ignore[attr-defined]


def test_the_developer_role_is_openais_system_role(served: Served, http: httpx.Client) -> None:
    messages = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert http.post("/v1/chat/completions", json=chat_body(messages=messages)).status_code == 200
    assert served.state.engine.prompts == ["<system>Be brief.\n<user>Hi\n<assistant>"]  # type: ignore[attr-defined]


def test_fields_the_server_cannot_honour_are_refused_not_ignored(served: Served, http: httpx.Client) -> None:
    chat, completions = "/v1/chat/completions", "/v1/completions"
    prompt = {"prompt": "Q: aspirin?\nA:"}
    refused = [(chat, chat_body(logprobs=True), "logprobs"), (chat, chat_body(top_logprobs=3), "top_logprobs"),
               (chat, chat_body(response_format={"type": "json_object"}), "response_format"),
               (completions, prompt | {"logprobs": 5}, "logprobs"), (completions, prompt | {"echo": True}, "echo"),
               (completions, prompt | {"best_of": 2}, "best_of"), (completions, prompt | {"suffix": "}"}, "suffix")]
    for path, body, name in refused:
        response = http.post(path, json=body)
        assert name in error(response, 400)
        assert response.json()["error"]["param"] == name
    assert served.state.engine.prompts == []  # type: ignore[attr-defined]
    honoured = [(chat, chat_body(logprobs=False, response_format={"type": "text"})),
                (completions, prompt | {"echo": False, "best_of": 1, "logprobs": None, "suffix": ""})]
    for path, body in honoured:
        assert http.post(path, json=body).status_code == 200


def test_unknown_urls_under_v1_get_an_openai_shaped_404(http: httpx.Client) -> None:
    assert error(http.post("/v1/embeddings", json={"input": "x"}), 404, "unknown_url") == \
        "Invalid URL (POST /v1/embeddings)."
    assert error(http.get("/v1/chat/completions"), 404, "unknown_url") == "Invalid URL (GET /v1/chat/completions)."
    assert http.get("/").status_code == 200  # the UI beside it is still served


def test_a_prompt_longer_than_the_context_is_refused_before_generating(served: Served, http: httpx.Client) -> None:
    engine = use(served, ScriptedEngine(lambda prompt: REPLY, n_ctx=64))
    response = http.post("/v1/completions", json={"prompt": "x" * 100, "max_tokens": 8})
    assert "context window is 64" in error(response, 400, "context_length_exceeded")
    assert response.json()["error"]["param"] == "prompt"  # the field that holds it on this endpoint
    body = chat_body(messages=[{"role": "user", "content": "y" * 100}], max_tokens=8, stream=True)
    response = http.post("/v1/chat/completions", json=body)
    error(response, 400, "context_length_exceeded")
    assert response.json()["error"]["param"] == "messages"
    assert engine.prompts == [] and not engine.busy


def test_bodies_over_the_limit_get_413_declared_or_chunked(http: httpx.Client) -> None:
    big = json.dumps(chat_body(messages=[{"role": "user", "content": "x" * (2 * MAX_BODY_BYTES)}])).encode()
    error(http.post("/v1/chat/completions", content=big), 413, "request_too_large")

    def chunked() -> Iterator[bytes]:
        for start in range(0, len(big), 64 * 1024):
            yield big[start:start + 64 * 1024]

    response = http.post("/v1/chat/completions", content=chunked())
    assert "content-length" not in response.request.headers
    error(response, 413, "request_too_large")


def test_an_engine_that_cannot_serve_gives_503_or_an_error_event(served: Served, http: httpx.Client) -> None:
    def down(prompt: str) -> str:
        raise EngineUnavailable("The llama-server at 127.0.0.1:1 stopped; it is being restarted.")

    use(served, ScriptedEngine(down))
    message = error(http.post("/v1/chat/completions", json=chat_body()), 503, "engine_unavailable")
    assert "llama-server" in message
    with http.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as response:
        payloads = events(response)
    assert json.loads(payloads[-1])["error"]["code"] == "engine_unavailable"
    assert not served.state.engine.busy


def test_a_failure_of_the_server_is_an_openai_shaped_500_or_a_last_error_event(served: Served,
                                                                                 http: httpx.Client) -> None:
    def broken(prompt: str) -> str:
        raise RuntimeError("a bug in /srv/jmedllm/app.py")

    use(served, ScriptedEngine(broken))
    message = error(http.post("/v1/chat/completions", json=chat_body()), 500, "internal_error")
    assert "/srv" not in message and "bug" not in message  # nothing of the server's insides
    with http.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as response:
        payloads = events(response)
    assert json.loads(payloads[-1])["error"]["code"] == "internal_error"  # an error event, not a cut stream
    assert not served.state.engine.busy
    use(served, ScriptedEngine(lambda prompt: REPLY))
    assert http.post("/v1/chat/completions", json=chat_body()).status_code == 200  # and it goes on answering


def keyed(served: Served, source: str) -> httpx.Client:
    """A client whose requests come from the loopback address ``source`` (its own throttle)."""
    return httpx.Client(base_url=served.url, transport=httpx.HTTPTransport(local_address=source), timeout=30)


def test_keys_are_required_when_configured(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    use(served, ScriptedEngine(lambda prompt: REPLY), ApiKeys.parse([("test", KEY)]))
    caplog.set_level(logging.INFO, logger="app.api.routes")
    with keyed(served, "127.0.0.2") as http:
        missing = http.get("/v1/models")
        assert "Missing API key" in error(missing, 401, "invalid_api_key")
        assert missing.headers["www-authenticate"] == "Bearer"
        started = time.monotonic()
        wrong = http.post("/v1/chat/completions", json=chat_body(), headers={"Authorization": "Bearer " + "w" * 43})
        assert error(wrong, 401, "invalid_api_key") == "Invalid API key."
        assert time.monotonic() - started >= 0.9  # a fixed delay after each wrong key
        right = http.post("/v1/chat/completions", json=chat_body(), headers={"Authorization": f"Bearer {KEY}"})
        assert right.status_code == 200
    key_id = hashlib.sha256(KEY.encode()).hexdigest()[:8]
    audit = [r.getMessage() for r in caplog.records if r.getMessage().startswith("api chat/completions: status=200")]
    prompt_tokens = len("<user>What does aspirin do?\n<assistant>")
    assert audit == [f"api chat/completions: status=200 key={key_id} address=127.0.0.2 "
                     f"prompt_tokens={prompt_tokens} completion_tokens={len(REPLY)} finish=stop"]
    assert not any("aspirin" in r.getMessage().lower() for r in caplog.records)


def test_wrong_keys_lock_the_address_out(served: Served) -> None:
    use(served, ScriptedEngine(lambda prompt: REPLY), ApiKeys.parse([("test", KEY)]))
    with keyed(served, "127.0.0.3") as http, ThreadPoolExecutor(5) as pool:
        wrong = list(pool.map(lambda _: http.get("/v1/models", headers={"Authorization": "Bearer x"}), range(5)))
        assert all(response.status_code == 401 for response in wrong)
        locked = http.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        message = error(locked, 401)
        assert "Too many wrong API keys" in message and "locked out for 15 minutes" in message
        assert "try again in about 15 minutes" in message
        assert 890 <= int(locked.headers["retry-after"]) <= 900
    with keyed(served, "127.0.0.4") as http:
        assert http.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_wrong_keys_wait_in_one_line_whatever_their_address(served: Served) -> None:
    """Guesses in parallel, or spread over addresses, get one wrong-key answer a second in all."""
    use(served, ScriptedEngine(lambda prompt: REPLY), ApiKeys.parse([("test", KEY)]))

    def guess(n: int) -> int:
        with keyed(served, f"127.0.1.{n}") as http:
            return http.get("/v1/models", headers={"Authorization": "Bearer x"}).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(guess, range(1, 5))) == [401] * 4
    assert time.monotonic() - started >= 3.9
    started = time.monotonic()
    with keyed(served, "127.0.1.5") as http:
        assert http.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert time.monotonic() - started < 0.9  # a right key never waits


def test_a_full_queue_gets_429_with_retry_after(served: Served) -> None:
    go = threading.Event()

    def held(prompt: str) -> str:
        go.wait(30)
        return REPLY

    engine = use(served, ScriptedEngine(held, slots=1))
    with httpx.Client(base_url=served.url, timeout=30) as http, ThreadPoolExecutor(1 + QUEUE_PER_SLOT) as pool:
        answered = [pool.submit(http.post, "/v1/chat/completions", json=chat_body()) for _ in range(1 + QUEUE_PER_SLOT)]
        deadline = time.monotonic() + 10
        while not engine.busy and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # the other four take their places in the queue
        started = time.monotonic()
        refused = http.post("/v1/chat/completions", json=chat_body())
        assert time.monotonic() - started < 0.5  # refused at once, not queued
        assert "Retry in a few seconds" in error(refused, 429, "rate_limit_exceeded")
        assert refused.headers["retry-after"] == "2"
        go.set()
        assert [future.result().json()["choices"][0]["message"]["content"] for future in answered] == [REPLY] * 5


def test_an_engine_with_two_slots_answers_two_requests_at_once(served: Served) -> None:
    go = threading.Event()
    engine = use(served, ScriptedEngine(lambda prompt: REPLY if go.wait(30) else "", slots=2))
    with httpx.Client(base_url=served.url, timeout=30) as http, ThreadPoolExecutor(2) as pool:
        answered = [pool.submit(http.post, "/v1/completions", json={"prompt": f"q{n}"}) for n in range(2)]
        deadline = time.monotonic() + 10
        while not engine.busy and time.monotonic() < deadline:  # busy: both slots generating
            time.sleep(0.02)
        assert sorted(engine.prompts) == ["q0", "q1"]
        go.set()
        assert [future.result().json()["choices"][0]["text"] for future in answered] == [REPLY] * 2


def wait_until_free(engine: ScriptedEngine, timeout: float) -> float:
    """Seconds until ``engine`` has a free slot again (fails after ``timeout``)."""
    started = time.monotonic()
    while engine.busy:
        assert time.monotonic() - started < timeout, "the slot was not freed"
        time.sleep(0.01)
    return time.monotonic() - started


def test_a_client_that_leaves_mid_stream_frees_the_slot(served: Served) -> None:
    engine = use(served, ScriptedEngine(lambda prompt: "word " * 2000, pause_s=0.02))
    with httpx.Client(base_url=served.url, timeout=30) as http:
        with http.stream("POST", "/v1/chat/completions", json=chat_body(stream=True, max_tokens=4000)) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            assert engine.busy
        assert wait_until_free(engine, 1.0) < 1.0
        started = time.monotonic()
        assert http.post("/v1/completions", json={"prompt": "next", "max_tokens": 5}).status_code == 200
        assert time.monotonic() - started < 1.0


def test_a_client_that_leaves_before_a_whole_answer_frees_the_slot(served: Served) -> None:
    engine = use(served, ScriptedEngine(lambda prompt: "word " * 2000, pause_s=0.02))
    with httpx.Client(base_url=served.url, timeout=0.5) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.post("/v1/chat/completions", json=chat_body(max_tokens=4000))
    assert wait_until_free(engine, 1.5) < 1.5


def test_a_queued_client_that_leaves_gives_up_its_place(served: Served) -> None:
    go = threading.Event()
    engine = use(served, ScriptedEngine(lambda prompt: REPLY if go.wait(30) else "", slots=1))
    with httpx.Client(base_url=served.url, timeout=30) as http, ThreadPoolExecutor(1) as pool:
        first = pool.submit(http.post, "/v1/completions", json={"prompt": "first"})
        while not engine.busy:
            time.sleep(0.02)
        with httpx.Client(base_url=served.url, timeout=0.5) as impatient:
            for _ in range(1 + QUEUE_PER_SLOT):
                with pytest.raises(httpx.ReadTimeout):
                    impatient.post("/v1/completions", json={"prompt": "queued"})
        time.sleep(0.5)  # the server notices they left
        go.set()
        assert first.result().status_code == 200
        assert http.post("/v1/completions", json={"prompt": "after"}).status_code == 200
    assert engine.prompts == ["first", "after"]


# API keys and the start-up rule, without a server


def private_file(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_key_files_hold_one_key_a_line_with_comments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEYS_ENV, "ignored-when-a-file-is-given-xxxxxx")
    other = new_api_key()
    keys = load_api_keys(private_file(tmp_path / "keys.txt", f"# EHR plug-in\n{KEY}\n\n  {other}  \n"))
    assert keys is not None and len(keys) == 2
    assert keys.verify(KEY) == hashlib.sha256(KEY.encode()).hexdigest()[:8]
    assert keys.verify(other) == hashlib.sha256(other.encode()).hexdigest()[:8]
    assert keys.verify(KEY + "x") is None and keys.verify("") is None and keys.verify("é" * 30) is None
    assert KEY not in repr(vars(keys))  # digests only


def test_key_files_are_refused_when_unsafe_or_malformed(tmp_path: Path) -> None:
    shared = private_file(tmp_path / "shared.txt", KEY + "\n")
    shared.chmod(0o640)
    with pytest.raises(AuthError, match="API keys file .* chmod 600"):
        load_api_keys(shared)
    with pytest.raises(AuthError, match="line 2: an API key must be at least 24"):
        load_api_keys(private_file(tmp_path / "short.txt", f"{KEY}\nshort-secret\n"))
    with pytest.raises(AuthError, match="line 1: .* without spaces"):
        load_api_keys(private_file(tmp_path / "spaces.txt", "a key with spaces in the middle\n"))
    with pytest.raises(AuthError, match="holds no API key"):
        load_api_keys(private_file(tmp_path / "empty.txt", "# none yet\n"))
    with pytest.raises(AuthError, match="Cannot read the API keys file"):
        load_api_keys(tmp_path / "missing.txt")


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEYS_ENV, raising=False)
    assert load_api_keys(None) is None
    other = new_api_key()
    monkeypatch.setenv(API_KEYS_ENV, f" {KEY},{other}\n")
    keys = load_api_keys(None)
    assert keys is not None and len(keys) == 2 and keys.verify(other)
    monkeypatch.setenv(API_KEYS_ENV, f"{KEY} tooshort")
    with pytest.raises(AuthError, match=r"\$JMEDLLM_API_KEYS, key 2"):
        load_api_keys(None)


def test_serving_beyond_loopback_needs_api_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JMEDLLM_DATA_DIR", str(tmp_path))  # no default users file
    monkeypatch.setenv(AUTH_ENV, Users({}).with_account("alice", "alice's long password", admin=True).text())
    monkeypatch.delenv(API_KEYS_ENV, raising=False)
    lan = ServeOptions(host="0.0.0.0", allowed_hosts=("x",))
    refusal = r"without API keys.*--api-key-file FILE.*token_urlsafe\(32\).*JMEDLLM_API_KEYS"
    with pytest.raises(AuthError, match=refusal):
        checked_options(lan)
    local = checked_options(ServeOptions())  # loopback with a login: allowed; the API refuses every request
    assert local.api_keys is None and local.api_key_required
    monkeypatch.setenv(API_KEYS_ENV, KEY)
    options = checked_options(lan)
    assert options.api_keys is not None and options.api_key_required
    monkeypatch.delenv(AUTH_ENV)
    monkeypatch.delenv(API_KEYS_ENV)
    assert not checked_options(ServeOptions()).api_key_required  # loopback, no login, no keys: open like the UI
