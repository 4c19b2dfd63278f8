"""Reasoning models: Qwen3's ``enable_thinking`` switch and answers read after the thinking.

A copy of the demo GGUF with Qwen3's chat template in its metadata (made once per session,
:mod:`tests.thinking_gguf`) runs on the local engine and on llama-server: thinking off puts Qwen3's
empty reasoning block after the assistant header, and both engines render the same prompt. The
extraction tests read ``fixtures/reasoning_outputs.jsonl``: outputs in the formats reasoning models
produce (Qwen3: ``<think>...</think>`` then the answer; DeepSeek-R1 distillations: the ``<think>`` is
in the prompt, the output has only ``</think>``; an unclosed block cut by the token limit), in
Japanese and English, written by hand in those formats (no such model is available offline).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from app import extraction
from app.engines.base import ChatOptions, Sampling
from app.engines.chat_template import ChatTemplate
from app.engines.llama_server import LlamaServerEngine
from app.engines.local import LocalEngine
from app.engines.server_process import LlamaServerProcess, ServerSettings
from app.extraction import answer_line, pick, strip_reasoning
from tests.conftest import scratch_folder
from tests.thinking_gguf import QWEN3_CHAT_TEMPLATE, QWEN3_NO_THINKING, copy_with_chat_template

REASONING_OUTPUTS = Path(__file__).parent / "fixtures" / "reasoning_outputs.jsonl"
OUTPUTS = [json.loads(line) for line in REASONING_OUTPUTS.read_text(encoding="utf-8").splitlines() if line.strip()]
ASSISTANT = "<|im_start|>assistant\n"
QUESTION = [{"role": "system", "content": "あなたは医師を支援するアシスタントです。簡潔に答えてください。"},
            {"role": "user", "content": "2型糖尿病の第一選択薬は何ですか？"}]
FOLLOW_UP = [*QUESTION,
             {"role": "assistant", "content": "<think>\nまず禁忌を確認する。\n</think>\n\nメトホルミンです。"},
             {"role": "user", "content": "透析患者ではどうですか？"}]
# After Qwen3's empty block the demo (a Qwen2.5, never trained on it) often gives only a stray tag; this it answers
ASK = [{"role": "system", "content": "You are a helpful assistant."},
       {"role": "user", "content": "Name three common causes of acute chest pain."}]
SWITCHES = (None, True, False)


@pytest.fixture(scope="module")
def thinking_model_path(tmp_path_factory: pytest.TempPathFactory, demo_model_path: Path) -> Iterator[Path]:
    """The demo GGUF with Qwen3's chat template in its metadata (written once for this module)."""
    with scratch_folder(tmp_path_factory, "thinking-model") as folder:
        yield copy_with_chat_template(demo_model_path, folder / "demo-qwen3-template.gguf", QWEN3_CHAT_TEMPLATE)


@pytest.fixture(scope="module")
def thinking_engine(thinking_model_path: Path) -> LocalEngine:
    return LocalEngine.load(thinking_model_path, n_gpu_layers=0, n_ctx=2048)


@pytest.fixture
def served_thinking_engine(llama_server_binary: Path, thinking_model_path: Path,
                           tmp_path: Path) -> Iterator[LlamaServerEngine]:
    """The thinking GGUF behind a llama-server of this test's own."""
    process = LlamaServerProcess(llama_server_binary, ServerSettings(thinking_model_path, parallel=1, n_ctx=2048),
                                 log_path=tmp_path / "llama-server.log")
    process.start()
    engine = LlamaServerEngine(process, thinking_model_path)
    yield engine
    engine.close()


def qwen3() -> ChatTemplate:
    return ChatTemplate(QWEN3_CHAT_TEMPLATE, bos_token="", eos_token="<|im_end|>")


def test_qwen3_template_renders_in_the_sandbox_and_switches_thinking() -> None:
    template = qwen3()
    assert template.switches_thinking
    reference = Jinja2ChatFormatter(QWEN3_CHAT_TEMPLATE, eos_token="<|im_end|>", bos_token="")
    plain = reference(messages=FOLLOW_UP).prompt  # type: ignore[arg-type]
    assert template.render(FOLLOW_UP) == template.render(FOLLOW_UP, thinking=True) == plain
    assert template.render(FOLLOW_UP, thinking=False) == plain + QWEN3_NO_THINKING
    assert plain.endswith("<|im_start|>user\n透析患者ではどうですか？<|im_end|>\n" + ASSISTANT)
    # an earlier answer's thinking is left out of the history (.split/.rstrip/.lstrip, namespace())
    assert "<|im_start|>assistant\nメトホルミンです。<|im_end|>\n" in plain and "禁忌を確認" not in plain


def test_qwen3_template_keeps_the_reasoning_of_a_turn_after_the_last_question() -> None:
    answered = [*QUESTION, {"role": "assistant", "content": "メトホルミンです。", "reasoning_content": "\n禁忌なし\n"}]
    assert qwen3().render(answered).endswith(f"{ASSISTANT}<think>\n禁忌なし\n</think>\n\nメトホルミンです。<|im_end|>\n"
                                             + ASSISTANT)


@pytest.mark.parametrize(("source", "switches"), [
    ("{% for m in messages %}{{ m.content }}{% endfor %}", False),
    ("{# enable_thinking is not used here #}{{ messages[0].content }}", False),
    ("{% set enable_thinking = false %}{{ enable_thinking }}", False),
    ("{{ messages[0].content }}{% if enable_thinking %}<think>\n{% endif %}", True),
    ("{% set thinking = enable_thinking | default(true) %}{{ thinking }}", True),
])
def test_switches_thinking_only_where_the_template_reads_enable_thinking(source: str, switches: bool) -> None:
    assert ChatTemplate(source, bos_token="", eos_token="").switches_thinking is switches


def test_the_thinking_gguf_is_the_demo_model_with_qwen3s_template(thinking_engine: LocalEngine,
                                                                 demo_engine: LocalEngine) -> None:
    assert thinking_engine.card.chat_template == QWEN3_CHAT_TEMPLATE
    assert thinking_engine.card.sha256 != demo_engine.card.sha256
    template_key = "tokenizer.chat_template"
    assert {k: v for k, v in thinking_engine.llama.metadata.items() if k != template_key} == \
        {k: v for k, v in demo_engine.llama.metadata.items() if k != template_key}
    prompt = "Q: What is the first-line drug for type 2 diabetes?\nA:"
    greedy = Sampling.greedy(max_tokens=8)
    assert thinking_engine.complete(prompt, greedy).text == demo_engine.complete(prompt, greedy).text  # same tensors


def test_the_local_engine_switches_thinking_off_with_qwen3s_empty_block(thinking_engine: LocalEngine,
                                                                        demo_engine: LocalEngine) -> None:
    assert thinking_engine.chat_template is not None and thinking_engine.chat_template.switches_thinking
    assert demo_engine.chat_template is not None and not demo_engine.chat_template.switches_thinking
    prompts = {thinking: thinking_engine.render_chat(QUESTION, thinking=thinking) for thinking in SWITCHES}
    assert prompts[None] == prompts[True]
    assert prompts[True][0].endswith(ASSISTANT) and "<think>" not in prompts[True][0]
    assert prompts[False] == (prompts[True][0] + QWEN3_NO_THINKING, prompts[True][1])
    assert prompts[False][1] == demo_engine.render_chat(QUESTION)[1] == ("<|im_end|>",)
    # the demo's own template ignores the switch
    assert len({demo_engine.render_chat(QUESTION, thinking=thinking) for thinking in SWITCHES}) == 1

    generation = thinking_engine.stream_chat(ASK, Sampling.greedy(max_tokens=16), options=ChatOptions(thinking=False))
    text = generation.result()
    assert generation.prompt == thinking_engine.render_chat(ASK)[0] + QWEN3_NO_THINKING
    assert generation.stats.finish_reason in ("stop", "length") and generation.stats.completion_tokens > 0
    assert answer_line(text) and "<|im_end|>" not in text


@pytest.mark.slow
def test_llama_server_renders_the_same_prompt_and_answers_with_thinking_off(
        served_thinking_engine: LlamaServerEngine, thinking_engine: LocalEngine) -> None:
    served = served_thinking_engine
    assert served.chat_template is not None and served.chat_template.switches_thinking
    for messages in (QUESTION, FOLLOW_UP):
        for thinking in SWITCHES:
            assert served.render_chat(messages, thinking=thinking) == thinking_engine.render_chat(messages,
                                                                                                  thinking=thinking)
    sampling = Sampling.greedy(max_tokens=16)
    answers = [engine.stream_chat(ASK, sampling, options=ChatOptions(thinking=False))
               for engine in (served, thinking_engine)]
    texts = [generation.result() for generation in answers]
    assert answers[0].prompt == answers[1].prompt and answers[0].prompt.endswith(ASSISTANT + QWEN3_NO_THINKING)
    assert answer_line(texts[0]) and texts[0] == texts[1]


def by_id(record: dict[str, Any]) -> str:
    return str(record["id"])


def test_the_outputs_cover_each_style_of_reasoning_output() -> None:
    outputs = [r["output"] for r in OUTPUTS]
    assert any(o.startswith("<think>") and "</think>" in o for o in outputs)  # Qwen3
    assert any("<think>" not in o and "</think>" in o for o in outputs)  # DeepSeek-R1 distill
    assert any("<think>" in o and "</think>" not in o for o in outputs)  # cut by the token limit
    assert {r["language"] for r in OUTPUTS} == {"ja", "en"}
    assert {"b", "(c)", "a, e"} <= {r["expected_answer_line"] for r in OUTPUTS}


@pytest.mark.parametrize("record", OUTPUTS, ids=by_id)
def test_the_answer_after_the_thinking_is_read_and_picked(record: dict[str, Any]) -> None:
    output = record["output"]
    assert strip_reasoning(output).strip() == record["expected_answer"]
    line = answer_line(output)
    assert line == record["expected_answer_line"]
    assert list(pick(line, record["choices"]).letters) == record["expected_letters"]


@pytest.mark.parametrize("record", OUTPUTS, ids=by_id)
def test_split_reasoning_gives_the_thinking_and_the_answer(record: dict[str, Any]) -> None:
    split = getattr(extraction, "split_reasoning", None)
    if split is None:
        pytest.skip("app.extraction.split_reasoning is not there yet")
    thinking, answer = split(record["output"])
    assert (thinking.strip(), answer.strip()) == (record["expected_thinking"], record["expected_answer"])
