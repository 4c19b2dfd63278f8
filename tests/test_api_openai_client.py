"""The official `openai` client against a real `jmedllm serve` process with the demo model.

The server gets its API key from ``$JMEDLLM_API_KEYS`` (set for the child only) and binds loopback.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from app.security import API_KEYS_ENV, new_api_key
from tests.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.slow

KEY = new_api_key()
QUESTION = "What is the normal range of fasting blood glucose? Answer in one sentence."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_model_path: Path, app_data_dir: Path) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("api-server")
    with pytest.MonkeyPatch.context() as env:
        env.setenv(API_KEYS_ENV, KEY)
        server = start_server(["--model", str(demo_model_path), "--ctx", "2048", "--gpu-layers", "0"],
                              folder / "server.log", app_data_dir / "api-tests.db")
    yield server
    stop_server(server)


def connect(server: Server, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "v1", api_key=key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return connect(server)


def ask(client: openai.OpenAI, model: str, question: str = QUESTION, max_tokens: int = 32) -> str:
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], max_tokens=max_tokens, temperature=0)
    assert answer.choices[0].finish_reason in ("stop", "length")
    return answer.choices[0].message.content or ""


def test_models_list_the_demo_file(client: openai.OpenAI, demo_model_path: Path) -> None:
    assert [model.id for model in client.models.list()] == [demo_model_path.name]


def test_streamed_chat_equals_the_whole_greedy_answer(client: openai.OpenAI, demo_model_path: Path) -> None:
    whole = ask(client, demo_model_path.name)
    assert whole.strip()
    stream = client.chat.completions.create(
        model=demo_model_path.name, messages=[{"role": "user", "content": QUESTION}], max_tokens=32, temperature=0,
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == whole
    usage = chunks[-1].usage
    assert usage is not None and 0 < usage.completion_tokens <= 32


def test_completions(client: openai.OpenAI, demo_model_path: Path) -> None:
    completion = client.completions.create(model=demo_model_path.name, prompt="def add(a, b):\n", max_tokens=16)
    assert completion.choices[0].text.strip()
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_an_empty_prompt_is_refused_and_the_server_keeps_answering(client: openai.OpenAI,
                                                                   demo_model_path: Path) -> None:
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError, match="prompt must not be empty"):
            client.completions.create(model=demo_model_path.name, prompt="", max_tokens=4, stream=stream)
    assert client.completions.create(model=demo_model_path.name, prompt="def", max_tokens=2).choices[0].text


def test_a_developer_message_steers_like_a_system_message(client: openai.OpenAI, demo_model_path: Path) -> None:
    def answer(instruction: ChatCompletionMessageParam) -> str | None:
        return client.chat.completions.create(
            model=demo_model_path.name, max_tokens=8, temperature=0,
            messages=[instruction, {"role": "user", "content": "What is aspirin?"}]).choices[0].message.content

    instruction = "Answer in Japanese."
    assert answer({"role": "developer", "content": instruction}) == answer({"role": "system", "content": instruction})


def test_a_wrong_key_is_refused(server: Server, demo_model_path: Path) -> None:
    with pytest.raises(openai.AuthenticationError):
        ask(connect(server, "wrong-" + new_api_key()), demo_model_path.name)


def test_four_concurrent_requests_queue_on_one_slot_and_all_get_answers(client: openai.OpenAI, server: Server,
                                                                        demo_model_path: Path) -> None:
    questions = [f"Name one symptom of disease number {n}." for n in range(4)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda q: ask(client, demo_model_path.name, q, 16), questions))
    assert all(answer.strip() for answer in answers)
    log = server.log_path.read_text()
    key_id = hashlib.sha256(KEY.encode()).hexdigest()[:8]
    assert log.count(f"api chat/completions: status=200 key={key_id} address=127.0.0.1") >= 4
    assert "disease number" not in log and QUESTION not in log  # the audit never keeps the text
