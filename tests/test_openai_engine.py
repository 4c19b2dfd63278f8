"""The ``openai`` engine against a real OpenAI-compatible server: JMedLLM Desk's own /v1 API under
uvicorn, a scripted engine behind it (fast). Streaming, chat, cancel, and each failure named by its
endpoint: down, wrong key, wrong model id, timeout, a prompt too long. The same engine against a
real llama-server is in tests/test_llama_server_engine.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from app.engines.base import EngineUnavailable, PromptTooLong, Sampling
from app.engines.remote import Endpoint, OpenAIEngine
from app.qa import Query, ask
from app.security import ApiKeys, new_api_key
from app.ui.state import AppState, ServeOptions
from tests.conftest import app_in_thread, free_port
from tests.scripted_engine import SCRIPTED_CARD, ScriptedEngine

REPLY = "Metformin is first-line. メトホルミン。"
KEY = new_api_key()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, AppState]]:
    """Our own API with one key, serving a scripted engine with two slots."""
    options = ServeOptions(port=free_port(), db_path=tmp_path_factory.mktemp("oa") / "x.db",
                           api_keys=ApiKeys.parse([("test", KEY)]))
    state = AppState(ScriptedEngine(lambda prompt: REPLY, slots=2, n_ctx=600), options)
    with app_in_thread(state) as (url, _):
        yield f"{url}/v1", state


@pytest.fixture
def backend(server: tuple[str, AppState]) -> ScriptedEngine:
    """A fresh scripted engine behind the server for each test."""
    engine = ScriptedEngine(lambda prompt: REPLY, slots=2, n_ctx=600)
    server[1].replace_engine(engine)
    return engine


def connect(url: str, **changes: object) -> OpenAIEngine:
    return OpenAIEngine(replace(Endpoint(url, KEY), **changes), slots=2)  # type: ignore[arg-type]


def test_the_card_names_the_endpoint_and_the_served_model(server: tuple[str, AppState],
                                                         backend: ScriptedEngine) -> None:
    engine = connect(server[0])
    assert engine.card.endpoint == server[0] and engine.card.file_name == SCRIPTED_CARD.file_name
    assert engine.n_ctx == 600 and engine.slots == 2 and engine.kind == "openai"
    assert server[0] in engine.device


def test_raw_and_chat_answers_stream_through_the_endpoint(server: tuple[str, AppState],
                                                         backend: ScriptedEngine) -> None:
    engine = connect(server[0])
    generation = engine.stream("Q: first-line drug for type 2 diabetes?\nA:", Sampling.greedy(max_tokens=64))
    assert generation.result() == REPLY and generation.stats.finish_reason == "stop"
    assert generation.stats.completion_tokens == len(REPLY)
    answer = ask(engine, Query("2型糖尿病の第一選択薬は？"))
    assert answer.generation.result() == REPLY
    assert backend.prompts[-1].startswith("<system>") and "2型糖尿病の第一選択薬は？" in backend.prompts[-1]


def test_stop_ends_the_request_on_the_server(server: tuple[str, AppState]) -> None:
    slow = ScriptedEngine(lambda prompt: REPLY * 20, pause_s=0.02, slots=1, n_ctx=600)
    server[1].replace_engine(slow)
    engine = connect(server[0])
    cancel = threading.Event()
    generation = engine.stream("Tell me everything.", Sampling.greedy(max_tokens=400), cancel)
    pieces = iter(generation)
    next(pieces)
    assert slow.busy
    cancel.set()
    list(pieces)
    assert generation.stats.finish_reason == "cancelled"
    deadline = time.monotonic() + 3
    while slow.busy and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not slow.busy and not engine.busy


def test_an_overlong_prompt_is_refused_before_generating_with_the_engines_message(
        server: tuple[str, AppState], backend: ScriptedEngine) -> None:
    engine = connect(server[0])
    with pytest.raises(PromptTooLong) as raised:
        engine.stream("x" * 700)
    assert str(raised.value) == str(PromptTooLong(700, 600))
    with pytest.raises(PromptTooLong, match="context window is 600 tokens"):
        engine.stream_chat([{"role": "user", "content": "x" * 700}])
    assert backend.prompts == [] and not engine.busy


def test_each_failure_names_the_endpoint(server: tuple[str, AppState], backend: ScriptedEngine,
                                         tmp_path: Path) -> None:
    url = server[0]
    with pytest.raises(EngineUnavailable, match=f"{url} refused the API key"):
        connect(url, api_key="wrong-" + KEY)
    with pytest.raises(EngineUnavailable, match=f"{url} does not serve the model 'nope.gguf'"):
        connect(url, model="nope.gguf")
    down = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EngineUnavailable, match=f"Cannot reach the engine at {down}"):
        connect(down)
    server[1].replace_engine(ScriptedEngine(lambda prompt: REPLY, pause_s=2.0, n_ctx=600))
    engine = connect(url, timeout_s=0.5)
    with pytest.raises(EngineUnavailable, match=f"{url} did not answer within 0.5 s"):
        engine.stream("Slow?", Sampling.greedy(max_tokens=4)).result()
