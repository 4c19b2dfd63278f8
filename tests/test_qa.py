"""Asking questions: validation of what users type, and the prompts each kind of question gets."""

from __future__ import annotations

import pytest

from app.engines.base import Engine
from app.qa import MAX_CHOICES, MAX_QUESTION_CHARS, Query, QuestionError, ask, parse_choices, validate


@pytest.mark.parametrize(
    ("question", "message"),
    [
        (Query(text=""), "empty"),
        (Query(text=" \n\t"), "empty"),
        (Query(text="x" * (MAX_QUESTION_CHARS + 1)), "limit is 20,000"),
        (Query(text="Q?", choices=("only",)), "at least two choices"),
        (Query(text="Q?", choices=tuple("abcdefghi")[: MAX_CHOICES + 1]), "At most 8 choices"),
        (Query(text="Q?", choices=("a", "b" * 1001)), "longer than 1000"),
        (Query(text="Q?", max_tokens=0), "max_tokens"),
    ],
)
def test_bad_questions_are_refused_clearly(question: Query, message: str) -> None:
    with pytest.raises(QuestionError, match=message):
        validate(question)


def test_parse_choices_from_text_or_list() -> None:
    assert parse_choices("心電図\n\n 胸部CT \n") == ("心電図", "胸部CT")
    assert parse_choices(["a", " ", "b"]) == ("a", "b")
    assert parse_choices(None) == ()


def test_multiple_choice_uses_the_paper_template_in_the_questions_language(demo_engine: Engine) -> None:
    answer = ask(demo_engine, Query(text="インスリンを分泌する臓器はどれか。", choices=("肝臓", "膵臓", "腎臓", "脾臓"),
                                       max_tokens=16))
    answer.generation.result()
    assert answer.language == "ja"
    assert answer.template == "medpalm_four_choice_cot_ja"
    assert answer.prompt.endswith("インスリンを分泌する臓器はどれか。\n肝臓,膵臓,腎臓,脾臓\n### 応答：\n")
    assert answer.generation.stats.completion_tokens >= 1


def test_free_question_goes_through_the_chat_template(demo_engine: Engine) -> None:
    answer = ask(demo_engine, Query(text="What is the normal adult resting heart rate?", max_tokens=16))
    text = answer.generation.result()
    assert answer.language == "en"
    assert answer.pick is None
    assert "<|im_start|>system\nYou are a clinical decision-support assistant" in answer.prompt
    assert answer.prompt.endswith("<|im_start|>assistant\n")
    assert text.strip()
