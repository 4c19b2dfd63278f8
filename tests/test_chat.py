"""Conversations: what the model is reminded of, reasoning kept apart, the context budget, regenerate,
multiple choice then follow-up; fast on the scripted engine, then two real turns on the demo model."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest

from app.chat import (
    Conversation,
    NoTurnToRegenerate,
    Reply,
    Stamp,
    Turn,
    answer,
    answer_choices,
    fit,
    messages,
    regenerate,
)
from app.demo_model import DEMO_SHA256
from app.engines.base import (
    ChatOptions,
    EngineBusy,
    Generation,
    GenerationStats,
    NotSupported,
    PromptTooLong,
    Sampling,
)
from app.engines.local import LocalEngine
from app.extraction import split_reasoning, strip_reasoning
from app.prompts import system_prompt
from app.qa import CHAT_REPEAT_PENALTY, QuestionError
from tests.scripted_engine import ScriptedEngine

ORGANS = ("肝臓", "膵臓", "腎臓", "脾臓")
STAMP = Stamp(file_name="m.gguf", sha256="ab" * 32, quantization="Q4_K_M", device="cpu", engine="local",
              tokens_per_second=12.5, completion_tokens=7, finish_reason="stop")


class RecordingEngine(ScriptedEngine):
    """The scripted engine, also keeping the sampling and options each chat was started with."""

    def __init__(self, reply: Callable[[str], str]) -> None:
        super().__init__(reply)
        self.chats: list[tuple[Sampling, ChatOptions]] = []

    def stream_chat(self, messages: Sequence[dict[str, str]], sampling: Sampling = Sampling(),
                    cancel: threading.Event | None = None, wait: bool = False,
                    options: ChatOptions = ChatOptions()) -> Generation:
        self.chats.append((sampling, options))
        return super().stream_chat(messages, sampling, cancel, wait, options)


class OpenedThinkingEngine(ScriptedEngine):
    """A template that opens ``<think>`` in the prompt (DeepSeek-R1 distillations): the output starts inside it."""

    def render_chat(self, messages: Sequence[dict[str, str]], cancel: threading.Event | None = None,
                    thinking: bool | None = None) -> tuple[str, tuple[str, ...]]:
        prompt, stops = super().render_chat(messages, cancel, thinking)
        return prompt + "<think>\n", stops


class ServerTemplatedEngine(ScriptedEngine):
    """An engine whose server templates chats itself (the openai engine): prompts cannot be counted here."""

    def render_chat(self, messages: Sequence[dict[str, str]], cancel: threading.Event | None = None,
                    thinking: bool | None = None) -> tuple[str, tuple[str, ...]]:
        raise NotSupported("The server templates chats itself.")


def turn(question: str, answer_text: str, thinking: str = "") -> Turn:
    return Turn(question=question, answer=answer_text, thinking=thinking, stamp=STAMP,
                asked_at="2026-01-01T00:00:00+00:00")


def finished(reply: Reply) -> Turn:
    for _ in reply:
        pass
    return reply.finish()


def numbered(prompt: str) -> str:
    """The scripted answer: which question this is (how many user turns the prompt holds)."""
    return f"<think>考え{prompt.count('<user>')}</think>\n\n答え{prompt.count('<user>')}です。"


def test_follow_ups_remind_the_model_of_earlier_answers_without_their_reasoning() -> None:
    engine = RecordingEngine(numbered)
    conversation = Conversation()
    questions = ["メトホルミンの主な副作用は？", "透析患者では？", "代替薬は？"]
    turns = [finished(answer(engine, conversation, q)) for q in questions]
    assert [t.answer for t in turns] == ["答え1です。", "答え2です。", "答え3です。"]
    assert [t.thinking for t in turns] == ["考え1", "考え2", "考え3"]
    assert conversation.turns == turns and conversation.language == "ja"
    first, second, third = engine.prompts
    assert first == f"<system>{system_prompt('ja')}\n<user>{questions[0]}\n<assistant>"
    assert second == f"{first}答え1です。\n<user>{questions[1]}\n<assistant>"
    assert third == f"{second}答え2です。\n<user>{questions[2]}\n<assistant>"
    assert "考え" not in third  # the reasoning is shown to the user, never sent back
    # every turn: the free-question sampling, the conversation's key
    assert {(s.repeat_penalty, s.temperature, s.max_tokens) for s, _ in engine.chats} == {(CHAT_REPEAT_PENALTY, 0, 512)}
    assert {o.conversation for _, o in engine.chats} == {conversation.id}


def test_the_conversation_keeps_its_language_unless_told() -> None:
    engine = ScriptedEngine(lambda _p: "ok")
    conversation = Conversation()
    finished(answer(engine, conversation, "心不全の分類は？"))
    finished(answer(engine, conversation, "And NYHA IV?"))  # English words, still the Japanese conversation
    assert engine.prompts[-1].startswith(f"<system>{system_prompt('ja')}")
    finished(answer(engine, conversation, "And NYHA IV?", language="en"))
    assert engine.prompts[-1].startswith(f"<system>{system_prompt('en')}") and conversation.language == "en"
    assert [m["role"] for m in messages(conversation, "next", "en")] == ["system", *["user", "assistant"] * 3, "user"]


def test_thinking_switch_reaches_the_engine() -> None:
    engine = RecordingEngine(lambda _p: "ok")
    conversation = Conversation()
    finished(answer(engine, conversation, "Q?", thinking=False))
    finished(answer(engine, conversation, "Q2?"))
    assert [o.thinking for _, o in engine.chats] == [False, None]


def test_reasoning_is_apart_from_the_answer_while_streaming_and_after() -> None:
    engine = ScriptedEngine(lambda _p: "<think>\n腎機能を確認する。\n</think>\n\n**減量**が必要です。")
    reply = answer(engine, Conversation(), "eGFR 25 でメトホルミンは？")
    seen = []
    for _ in reply:
        seen.append(reply.visible())
    for (thinking, answer_so_far), (next_thinking, next_answer) in zip(seen, seen[1:], strict=False):
        assert next_thinking.startswith(thinking) and next_answer.startswith(answer_so_far)  # each part only grows
    assert all("<" not in thinking + answer_so_far for thinking, answer_so_far in seen)  # no half tag shown
    assert ("腎機能を確認", "") in seen  # an unclosed <think> is thinking
    done = reply.finish()
    assert (done.thinking, done.answer) == ("腎機能を確認する。", "**減量**が必要です。")
    assert reply.finish() is done and reply.conversation.turns == [done]  # finishing twice adds it once


def test_reasoning_opened_by_the_template_and_reasoning_cut_short() -> None:
    opened = OpenedThinkingEngine(lambda _p: "まず考える。</think>答えはbです。")
    reply = answer(opened, Conversation(), "どれか？")
    streamed = []
    for _ in reply:
        streamed.append(reply.visible())
    assert ("まず考える", "") in streamed
    assert (reply.finish().thinking, reply.finish().answer) == ("まず考える。", "答えはbです。")
    cut = answer(ScriptedEngine(lambda _p: "<think>長い推論" + "。" * 50), Conversation(), "Q?", max_tokens=11)
    done = finished(cut)
    assert (done.thinking, done.answer, done.stamp.finish_reason) == ("長い推論", "", "length")


def test_split_reasoning() -> None:
    assert split_reasoning("no reasoning") == ("", "no reasoning")
    assert split_reasoning("<think>\na\n</think>\n\nb") == ("a", "\n\nb")
    assert split_reasoning("prompt-opened</think>answer") == ("prompt-opened", "answer")
    assert split_reasoning("<think>one</think>x<think>two</think>y") == ("one\n\ntwo", "xy")
    assert split_reasoning("<think>cut short") == ("cut short", "")
    assert split_reasoning("<think></think>empty") == ("", "empty")
    for text in ("<think>a</think>b", "a</think>b", "<think>a", "plain"):
        assert strip_reasoning(text) == split_reasoning(text)[1]


def test_fit_says_how_many_oldest_turns_to_leave_out() -> None:
    turns = [turn(f"question{i}", "a" * 20) for i in range(3)]  # one character is one token
    per_turn = len("<user>question0\n<assistant>" + "a" * 20 + "\n")
    alone = len(ScriptedEngine(lambda _p: "").render_chat(messages(Conversation(), "next?", "en"))[0])
    max_tokens = 30

    def fit_in(n_ctx: int) -> tuple[bool, int | None, int | None]:
        conversation = Conversation(language="en", turns=list(turns))
        found = fit(ScriptedEngine(lambda _p: "", n_ctx=n_ctx), conversation, "next?", max_tokens)
        assert found.n_ctx == n_ctx
        return found.fits, found.prompt_tokens, found.drop

    full = alone + 3 * per_turn
    assert fit_in(full + max_tokens) == (True, full, 0)  # exactly fits
    assert fit_in(full + max_tokens - 1) == (False, full, 1)
    assert fit_in(alone + per_turn + max_tokens) == (False, full, 2)
    assert fit_in(alone + max_tokens) == (False, full, 3)
    assert fit_in(alone + max_tokens - 1) == (False, full, None)  # not even the question alone


def test_dropping_oldest_turns_is_visible_and_lasts() -> None:
    engine = ScriptedEngine(lambda _p: "ok")
    conversation = Conversation(language="en", turns=[turn("first?", "A1"), turn("second?", "A2")])
    finished(answer(engine, conversation, "third?", drop=1))
    assert conversation.dropped == 1 and len(conversation.turns) == 3
    assert "first?" not in engine.prompts[-1] and "second?" in engine.prompts[-1]
    finished(answer(engine, conversation, "fourth?"))
    assert "first?" not in engine.prompts[-1] and "third?" in engine.prompts[-1]
    assert fit(engine, conversation, "fifth?", 10).drop == 0


def test_a_question_too_long_even_alone() -> None:
    engine = ScriptedEngine(lambda _p: "ok", n_ctx=600)
    conversation = Conversation()
    found = fit(engine, conversation, "long " * 200, 16)
    assert (found.fits, found.drop) == (False, None) and found.prompt_tokens is not None and found.prompt_tokens > 600
    with pytest.raises(PromptTooLong, match="context window is 600 tokens"):
        answer(engine, conversation, "long " * 200)
    assert conversation.turns == [] and not engine.busy


def test_an_engine_that_cannot_count_is_assumed_to_fit() -> None:
    found = fit(ServerTemplatedEngine(lambda _p: ""), Conversation(), "Q?", 512)
    assert (found.fits, found.prompt_tokens, found.drop) == (True, None, 0)


def test_bad_questions_and_a_busy_engine_leave_the_conversation_as_it_was() -> None:
    engine = ScriptedEngine(lambda _p: "x" * 50)
    conversation = Conversation(turns=[turn("Q1", "A1")])
    with pytest.raises(QuestionError, match="empty"):
        answer(engine, conversation, "   ")
    running = answer(engine, Conversation(), "other person's question")
    with pytest.raises(EngineBusy):
        answer(engine, conversation, "Q2", drop=1)
    with pytest.raises(EngineBusy):
        regenerate(engine, conversation)
    assert conversation.turns == [turn("Q1", "A1")] and conversation.dropped == 0
    running.generation.close()
    with pytest.raises(NoTurnToRegenerate, match="no answer to regenerate"):
        regenerate(engine, Conversation())


def test_regenerate_answers_the_last_question_again() -> None:
    answers = iter(["first", "second", "third", "fourth"])
    engine = ScriptedEngine(lambda _p: next(answers))
    conversation = Conversation()
    finished(answer(engine, conversation, "Q1?"))
    finished(answer(engine, conversation, "Q2?"))
    again = finished(regenerate(engine, conversation))
    assert [(t.question, t.answer) for t in conversation.turns] == [("Q1?", "first"), ("Q2?", "third")]
    assert again is conversation.turns[-1]
    assert engine.prompts[2] == engine.prompts[1]  # the same context as the answer it replaces


def test_stop_keeps_the_partial_answer_and_the_conversation_goes_on() -> None:
    cancel = threading.Event()
    engine = ScriptedEngine(lambda _p: "word " * 100, pause_s=0.001)
    conversation = Conversation()
    reply = answer(engine, conversation, "Explain sepsis.", cancel)
    for _ in reply:
        if len(reply.generation.text) >= 10:
            cancel.set()
    stopped = reply.finish()
    assert stopped.stamp.finish_reason == "cancelled" and 0 < len(stopped.answer) < 100
    follow_up = answer(engine, conversation, "Shorter, please.")
    assert stopped.answer in follow_up.generation.prompt
    follow_up.finish()  # finishing early stops it
    assert conversation.turns[-1].stamp.finish_reason == "cancelled" and not engine.busy


def test_multiple_choice_turn_then_follow_up() -> None:
    engine = ScriptedEngine(lambda p: "膵臓\nβ細胞から分泌される。" if "### 応答" in p else "β細胞です。")
    conversation = Conversation()
    question = "インスリンを分泌する臓器はどれか。"
    picked = finished(answer_choices(engine, conversation, question, ORGANS))
    assert (picked.choices, picked.chosen, picked.answer) == (ORGANS, "(b) 膵臓", "膵臓\nβ細胞から分泌される。")
    assert engine.prompts[0].endswith("肝臓,膵臓,腎臓,脾臓\n### 応答：\n")  # the paper template, as Ask does
    follow_up = finished(answer(engine, conversation, "どの細胞から？"))
    assert follow_up.answer == "β細胞です。" and follow_up.choices == ()
    assert (f"<user>{question}\n(a) 肝臓\n(b) 膵臓\n(c) 腎臓\n(d) 脾臓\n<assistant>膵臓\nβ細胞から分泌される。\n"
            "<user>どの細胞から？\n") in engine.prompts[1]
    conversation.turns.pop()
    again = finished(regenerate(engine, conversation))  # a multiple-choice turn is regenerated as one
    assert again.chosen == "(b) 膵臓" and engine.prompts[2] == engine.prompts[0]


def test_stamp_says_which_model_answered() -> None:
    engine = ScriptedEngine(lambda _p: "ok")
    stats = GenerationStats(prompt_tokens=3, completion_tokens=12, seconds=2.0, first_token_seconds=0.5,
                            finish_reason="stop")
    stamp = Stamp.of(engine, stats)
    assert stamp.text() == (f"scripted.gguf · sha256 {'5c' * 6} · none · scripted, local engine · 12 tokens, "
                            "7.3 tok/s · stop")
    demo = replace(stamp, sha256=DEMO_SHA256, endpoint="https://gpu:8000/v1")
    assert demo.text().startswith("https://gpu:8000/v1 · scripted.gguf · sha256 1d9614638d18")
    assert demo.is_demo and demo.text().endswith("demo model, not for clinical use")


def test_a_japanese_follow_up_on_the_demo_model(demo_engine: LocalEngine) -> None:
    conversation = Conversation()
    first = answer(demo_engine, conversation, "メトホルミンの主な副作用を一つ挙げてください。", max_tokens=24)
    first_turn = finished(first)
    assert first_turn.answer and first_turn.stamp.sha256 == DEMO_SHA256 and first_turn.stamp.completion_tokens > 0
    second = answer(demo_engine, conversation, "透析患者ではどうですか？", max_tokens=24)
    assert first_turn.answer in second.generation.prompt
    assert "メトホルミンの主な副作用" in second.generation.prompt
    second_turn = finished(second)
    assert second_turn.answer and conversation.language == "ja" and len(conversation.turns) == 2
    assert second.generation.stats.prompt_tokens > first.generation.stats.prompt_tokens
