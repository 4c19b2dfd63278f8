"""The one extraction step (answer text -> picked letters) that the Ask tab and the benchmark share."""

from __future__ import annotations

from app.bench.scoring import score_response
from app.extraction import answer_line, first_line, pick, similarity, strip_reasoning
from app.qa import Answer

CHOICES = ("Gaucher病", "von Gierke病", "オルニチントランスカルバミラーゼ欠損症")


def test_pick_by_letters_text_or_not_at_all() -> None:
    assert pick(answer_line("(b)\nreasoning..."), CHOICES).letters == ("b",)
    assert pick("ｃ．", CHOICES).letters == ("c",)
    assert pick("a, c", CHOICES).letters == ("a", "c")
    assert pick(answer_line("\nオルニチントランスカルバミラーゼ欠損症です。"), CHOICES).letters == ("c",)
    refused = pick("I cannot answer that.", CHOICES)
    assert refused.abstained and refused.letters == () and refused.best_similarity < 0.3
    assert pick("", CHOICES).abstained
    assert pick("d", CHOICES).abstained  # no option d: read as text, which matches nothing
    assert first_line("\n\n  answer  \nmore") == "answer"
    assert similarity("abc", "abc") == 1.0


def test_k_best_choices_ties_to_the_lower_index() -> None:
    choices = ("same", "same", "other")
    assert pick("same", choices).letters == ("a",)
    assert pick("same", choices, k=2).letters == ("a", "b")


def test_reasoning_blocks_are_dropped_before_the_answer_line() -> None:
    assert strip_reasoning("<think>\nlong thoughts\n</think>\n\n(b)") == "\n\n(b)"
    assert answer_line("<think>\nmaybe a?\n</think>\nvon Gierke病") == "von Gierke病"
    assert answer_line("thinking opened by the template</think>\nc") == "c"
    assert answer_line("<think>never closed, cut by the token limit") == ""
    assert answer_line("prompt ### 応答：\n<think>x</think>\nb\nwhy", "### 応答：") == "b"


def test_ask_tab_and_benchmark_pick_the_same_option() -> None:
    class Finished:  # a finished generation, as the Ask tab holds one
        text = "<think>\nGaucher? no.\n</think>\nvon Gierke病です。\n糖原病I型。"

    answer = Answer(Finished(), "ja", CHOICES, None, "")  # type: ignore[arg-type]
    bench = score_response("X1", answer_line(Finished.text), CHOICES, ["b"])
    assert answer.pick is not None and answer.pick.letters == bench.picked == ("b",)
    assert answer.chosen_text() == "(b) von Gierke病"
