"""Chat templates are untrusted code from the GGUF: rendering is bounded, cancellable, and fails clearly.

The hostile templates run through the real renderer (:class:`ChatTemplate`), and end to end on a
second real LocalEngine of the demo model whose template is swapped (no hostile GGUF needed):
through ``app.qa.ask``, the ``jmedllm ask`` command and a real Gradio server.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from click.testing import CliRunner
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

import app.cli
from app.engines.base import Engine
from app.engines.chat_template import (
    MAX_PROMPT_CHARS,
    RENDER_DEADLINE_S,
    ChatTemplate,
    RenderCancelled,
    TemplateRenderError,
)
from app.engines.local import LocalEngine
from app.qa import Query, ask
from tests.conftest import free_port

NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
HUNDRED_MB = "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}"
MESSAGES = [{"role": "system", "content": "あなたは医師です。"}, {"role": "user", "content": "頭痛の原因は？"}]


def template(source: str) -> ChatTemplate:
    return ChatTemplate(source, bos_token="<s>", eos_token="</s>")


def timed(render: Callable[[], object]) -> tuple[BaseException, float]:
    """The exception ``render`` raises and how long it took to raise it."""
    start = time.monotonic()
    with pytest.raises((TemplateRenderError, RenderCancelled)) as info:
        render()
    return info.value, time.monotonic() - start


def test_nested_loops_stop_at_the_deadline_with_a_clear_message() -> None:
    error, seconds = timed(lambda: template(NESTED_LOOPS).render(MESSAGES))
    assert isinstance(error, TemplateRenderError)
    assert f"did not finish within {RENDER_DEADLINE_S:g} s" in str(error)
    assert "template line 1" in str(error)
    assert RENDER_DEADLINE_S - 0.1 < seconds < RENDER_DEADLINE_S + 1


def test_a_hundred_megabytes_of_output_stop_at_the_cap() -> None:
    error, seconds = timed(lambda: template(HUNDRED_MB).render(MESSAGES))
    assert f"{MAX_PROMPT_CHARS:,}-character limit" in str(error)
    assert seconds < 1


@pytest.mark.parametrize("source", [
    "{{ 'x' * 100000000 }}",
    "{{ [0] * 100000000 }}",
    "{{ 2 ** 100000000 }}",
    "{% set ns = namespace(n=3) %}{% for i in range(64) %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n }}",
    "{{ 'a'|center(1000000000) }}",
    "{{ '%999999999s' % 'x' }}",
    "{{ '{:>999999999}'.format('x') }}",
    "{{ 'x'.ljust(1000000000) }}",
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
    "{% set s = 'x' * 1000000 %}{% set b %}{% for i in range(100000) %}{{ s }}{% endfor %}{% endset %}{{ b }}",
], ids=["str-repeat", "list-repeat", "power", "squaring", "center", "percent-width", "format-width", "ljust",
        "tilde-doubling", "plus-doubling", "set-block"])
def test_one_operation_building_a_huge_value_is_refused(source: str) -> None:
    error, seconds = timed(lambda: template(source).render(MESSAGES))
    assert "limit for a prompt" in str(error)
    assert seconds < 1


def test_a_constant_huge_value_is_not_built_when_the_model_loads() -> None:
    start = time.monotonic()
    compiled = template("{{ 'a'|center(1000000000) }}{{ 'x' * 1000000000 }}")
    assert time.monotonic() - start < 1
    with pytest.raises(TemplateRenderError, match="limit for a prompt"):
        compiled.render(MESSAGES)


def test_a_syntax_error_is_a_clear_error_at_load_naming_the_line() -> None:
    with pytest.raises(TemplateRenderError, match=r"syntax error: unexpected '}' \(template line 2\)"):
        template("{% for m in messages %}\n{{ m.content }\n{% endfor %}")


@pytest.mark.parametrize("source", ["{{ ''.__class__.__mro__ }}", "{{ ''.__class__ }}",
                                    "{{ raise_exception.__globals__ }}"])
def test_blocked_attribute_access_is_a_clear_error(source: str) -> None:
    with pytest.raises(TemplateRenderError, match=r"blocked: access to attribute '__\w+__' .* unsafe"):
        template(source).render(MESSAGES)


def test_template_failures_name_the_problem() -> None:
    with pytest.raises(TemplateRenderError, match="refused the conversation: System role not supported"):
        template("{{ raise_exception('System role not supported') }}").render(MESSAGES)
    with pytest.raises(TemplateRenderError, match=r"failed: UndefinedError: .* \(template line 2\)"):
        template("ok\n{{ nothing.here() }}").render(MESSAGES)
    with pytest.raises(TemplateRenderError, match="failed: RecursionError"):
        template("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}").render(MESSAGES)


def test_cancel_from_another_thread_stops_a_render_quickly() -> None:
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    error, seconds = timed(lambda: template(NESTED_LOOPS).render(MESSAGES, cancel))
    assert isinstance(error, RenderCancelled)
    assert seconds < 0.2 + 0.5


def test_the_previous_trace_function_keeps_tracing_and_is_restored() -> None:
    seen: list[str] = []

    def recorder(frame: FrameType, event: str, arg: Any) -> None:
        seen.append(frame.f_code.co_name)

    previous = sys.gettrace()
    sys.settrace(recorder)
    try:
        good = template("{{ messages|tojson }}")
        assert good.render(MESSAGES).startswith('[{"role": "system"')
        assert sys.gettrace() is recorder
        assert "tojson" in seen  # the filter ran under the previous tracer, the template's frames did not
        assert "root" not in seen
        with pytest.raises(TemplateRenderError):
            template(HUNDRED_MB).render(MESSAGES)
        assert sys.gettrace() is recorder
        cancel = threading.Event()
        cancel.set()
        with pytest.raises(RenderCancelled):
            template(NESTED_LOOPS).render(MESSAGES, cancel)
        assert sys.gettrace() is recorder
    finally:
        sys.settrace(previous)


def test_the_demo_prompt_is_identical_to_llama_cpp_pythons_formatter(demo_engine: LocalEngine) -> None:
    assert demo_engine.chat_template is not None and demo_engine.card.chat_template is not None
    reference = Jinja2ChatFormatter(template=demo_engine.card.chat_template,
                                    eos_token=demo_engine.chat_template.eos_token,
                                    bos_token=demo_engine.chat_template.bos_token)
    conversation = [*MESSAGES, {"role": "assistant", "content": "緊張型頭痛など。"},
                    {"role": "user", "content": 'Quotes " \\ and <tags> & {{ braces }}'}]
    for messages in (MESSAGES, conversation, MESSAGES[1:]):
        expected = reference(messages=messages)  # type: ignore[arg-type]
        assert expected.stop == ["<|im_end|>"]
        assert demo_engine.render_chat(messages) == (expected.prompt, ("<|im_end|>",))


@pytest.fixture(scope="module")
def second_engine(demo_model_path: Path) -> LocalEngine:
    """A second demo LocalEngine whose template the tests swap (the shared ``demo_engine`` stays intact)."""
    return LocalEngine.load(demo_model_path, n_gpu_layers=0, n_ctx=512)


@pytest.fixture
def hostile_engine(second_engine: LocalEngine) -> Iterator[LocalEngine]:
    """``second_engine`` with the nested-loop template; its own template is back afterwards."""
    good = second_engine.chat_template
    assert good is not None
    second_engine.chat_template = ChatTemplate(NESTED_LOOPS, good.bos_token, good.eos_token)
    yield second_engine
    second_engine.chat_template = good


def test_a_hostile_template_question_fails_clearly_and_the_next_is_answered(
        hostile_engine: LocalEngine, demo_engine: LocalEngine) -> None:
    question = Query("頭痛の原因は？", max_tokens=8)
    error, seconds = timed(lambda: ask(hostile_engine, question))
    assert "chat template did not finish" in str(error) and seconds < RENDER_DEADLINE_S + 1
    assert not hostile_engine.busy
    assert ask(demo_engine, question).generation.result().strip()


def test_a_cancelled_render_ends_the_generation_as_cancelled(hostile_engine: LocalEngine) -> None:
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    start = time.monotonic()
    answer = ask(hostile_engine, Query("頭痛の原因は？", max_tokens=8), cancel)
    answer.generation.result()
    assert time.monotonic() - start < 0.2 + 0.5
    assert answer.prompt == "" and answer.generation.text == ""
    assert answer.generation.stats.finish_reason == "cancelled"
    assert not hostile_engine.busy


def _cli_ask(engine: Engine, monkeypatch: pytest.MonkeyPatch, interrupt_after_s: float | None = None) -> Any:
    """``jmedllm ask`` in this process on ``engine``; SIGINT after ``interrupt_after_s`` if given."""
    monkeypatch.setattr(app.cli, "load_engine", lambda *args: engine)
    previous = signal.getsignal(signal.SIGINT)  # the command installs its own handler
    if interrupt_after_s is not None:
        threading.Timer(interrupt_after_s, signal.raise_signal, (signal.SIGINT,)).start()
    try:
        return CliRunner().invoke(app.cli.main, ["ask", "頭痛の原因は？", "--max-tokens", "8"])
    finally:
        signal.signal(signal.SIGINT, previous)


def test_cli_shows_a_clean_error_for_a_hostile_template(hostile_engine: LocalEngine,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    result = _cli_ask(hostile_engine, monkeypatch)
    assert result.exit_code == 1
    assert "Error: The model's chat template did not finish" in result.output
    assert "Traceback" not in result.output


def test_cli_ctrl_c_stops_a_render(hostile_engine: LocalEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    start = time.monotonic()
    result = _cli_ask(hostile_engine, monkeypatch, interrupt_after_s=0.3)
    assert time.monotonic() - start < 0.3 + 0.7
    assert result.exit_code == 130, result.output  # stopped, as a shell expects of Ctrl-C
    assert "cancelled" in result.output


@pytest.mark.slow
def test_ui_shows_the_template_error_and_answers_the_next_question(hostile_engine: LocalEngine,
                                                                   tmp_path: Path) -> None:
    from app.ui.server import apply_offline_environment

    apply_offline_environment()
    from gradio_client import Client

    from app.ui.blocks import build_app
    from app.ui.i18n import t
    from app.ui.state import AppState, ServeOptions

    hostile = hostile_engine.chat_template
    assert hostile is not None and hostile_engine.card.chat_template is not None
    port = free_port()
    demo = build_app(AppState(hostile_engine, ServeOptions(port=port, db_path=tmp_path / "ui.db")), "en")
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name="127.0.0.1", server_port=port, share=False, inbrowser=False, ssr_mode=False,
                prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        start = time.monotonic()
        with pytest.raises(Exception, match="chat template did not finish within") as info:
            client.predict("頭痛の原因は？", "", "auto", "auto", "0", 16, "default", False, api_name="/chat")
        assert "None" not in str(info.value)
        assert time.monotonic() - start < RENDER_DEADLINE_S + 5
        job = client.submit("頭痛の原因は？", "", "auto", "auto", "0", 16, "default", False, api_name="/chat")
        time.sleep(0.5)
        start = time.monotonic()
        client.predict(api_name="/stop")  # Stop during the render ends the answer as stopped
        chat, _, _, _ = job.result(timeout=RENDER_DEADLINE_S + 5)
        assert time.monotonic() - start < 1.5
        assert t("stopped", "en") in chat[-1]["content"][0]["text"]
        # the model's own template again, on the same server and its one queue slot: nothing stays blocked
        hostile_engine.chat_template = ChatTemplate(hostile_engine.card.chat_template, hostile.bos_token,
                                                    hostile.eos_token)
        chat, _, card, _ = client.predict("頭痛の原因は？", "", "auto", "auto", "0", 16, "default", False,
                                          api_name="/chat")
        assert chat[-1]["content"][0]["text"].strip() and "tok/s" in card
    finally:
        demo.close()
