"""Conversations as chat messages: reasoning folded apart, safe Markdown, the stamp escaped, dropped turns noted."""

from __future__ import annotations

from dataclasses import replace

from app.chat import Conversation, Stamp, Turn
from app.ui.chat_view import REASONING_TITLE, conversation_messages, streaming_messages

STAMP = Stamp(file_name="<b>x</b>.gguf", sha256="ab" * 32, quantization="Q4_K_M", device="CPU", engine="local",
              tokens_per_second=12.5, completion_tokens=9, finish_reason="cancelled")


def turn(question: str, answer: str, thinking: str = "", choices: tuple[str, ...] = (), chosen: str = "") -> Turn:
    return Turn(question=question, answer=answer, thinking=thinking, stamp=STAMP, asked_at="2025-01-01T00:00:00Z",
                choices=choices, chosen=chosen)


def test_a_turn_shows_question_reasoning_answer_and_stamp() -> None:
    chat = Conversation(turns=[turn("<img src=http://127.0.0.1:9/x>?", "**yes**", thinking="hmm")])
    user, reasoning, answer = conversation_messages(chat, "en")
    assert user == {"role": "user", "content": "&lt;img src=`http://127.0.0.1:9/x`>?"}
    assert reasoning["metadata"] == {"title": REASONING_TITLE, "status": "done"} and reasoning["content"] == "hmm"
    assert answer["content"].startswith("**yes**")
    assert "(stopped)" in answer["content"]  # a cancelled answer is marked
    unescaped = answer["content"].replace("\\", "")
    assert "&lt;b&gt;x&lt;/b&gt;" in unescaped and "12.5 tok/s" in unescaped


def test_an_answer_cut_at_the_token_limit_says_so_in_the_ui_language() -> None:
    cut = Conversation(turns=[replace(turn("q", "The answer is"), stamp=replace(STAMP, finish_reason="length"))])
    japanese = conversation_messages(cut, "ja")[1]["content"]
    assert "*（長さの上限で打ち切り：最大トークン数を増やしてください）*" in japanese
    assert "*(cut off at the token limit: raise Max new tokens)*" in conversation_messages(cut, "en")[1]["content"]
    done = Conversation(turns=[replace(turn("q", "Done."), stamp=replace(STAMP, finish_reason="stop"))])
    assert "cut off" not in conversation_messages(done, "en")[1]["content"]
    assert "(stopped)" not in conversation_messages(done, "en")[1]["content"]


def test_a_multiple_choice_turn_lists_its_choices_and_names_the_pick() -> None:
    chat = Conversation(turns=[turn("Which?", "b", choices=("Liver", "Pancreas"), chosen="(b) Pancreas")])
    user, answer = conversation_messages(chat, "ja")
    assert user["content"] == "Which?\n\n- (a) Liver\n- (b) Pancreas"
    assert "**選ばれた選択肢:** \\(b\\) Pancreas" in answer["content"]


def test_dropped_turns_are_noted_before_the_first_turn_the_model_sees() -> None:
    chat = Conversation(turns=[turn("q1", "a1"), turn("q2", "a2")], dropped=1)
    messages = conversation_messages(chat, "en")
    assert [m["role"] for m in messages] == ["user", "assistant", "assistant", "user", "assistant"]
    assert "no longer sees the 1 earlier turn" in messages[2]["content"]


def test_streaming_shows_pending_reasoning_until_the_answer_begins() -> None:
    thinking_only = streaming_messages("q", (), "let me think", "")
    assert [m.get("metadata", {}).get("status") for m in thinking_only] == [None, "pending"]
    answering = streaming_messages("q", (), "let me think", "The")
    assert answering[1]["metadata"]["status"] == "done" and answering[2]["content"] == "The"
