"""The two readings of an answer: the corrected one (answer text -> picked letters) that the Ask tab and
the benchmark share, and the paper harness's line that its metrics read."""

from __future__ import annotations

from app.bench.scoring import score_response
from app.extraction import (
    answer_line,
    first_line,
    harness_response,
    harness_response_final,
    pick,
    similarity,
    strip_reasoning,
)
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


def test_harness_response_reads_as_eval_bench_does() -> None:
    assert harness_response("指示\n### 応答：\n\n  答え \n次の行") == "答え"
    assert harness_response("### 応答：\nA\n### 応答：\nB") == "A"  # first occurrence, up to the next
    assert harness_response("### 応答：\n### 応答：\nB") == ""
    assert harness_response("reason ### Answer: a\n### 応答：\nz") == "z"  # the Japanese marker outranks, wherever
    assert harness_response("### Response:\nreasoning\n### Answer: X\nmore") == "X"
    assert harness_response("### Response:\nreasoning\n### Answer：X") == "reasoning"  # full-width colon: no marker
    assert harness_response("### Answer: a ### Answer: b") == "a"
    assert harness_response("### 応答:\nA") == "### 応答:"  # half-width colon: no marker, the whole text
    assert harness_response("### 応答： A\nB") == "### 応答： A"  # no newline right after: no marker
    assert harness_response("### Response:\r\nX\r\nY") == "X"
    assert harness_response("### Response:\n\u3000\nX") == "X"
    assert harness_response("### Response:\na\u2028b") == "a\u2028b"  # only "\n" ends the line
    assert first_line("a\u2028b") == "a"  # the corrected reading splits every line break


def test_the_two_readings_side_by_side() -> None:
    continuation = "Let us summarize.\n### Answer: von Gierke病\n"
    assert answer_line(continuation, "### Response:") == "Let us summarize."
    assert harness_response("### Input:\nQ\n### Response:\n" + continuation) == "von Gierke病"


def test_when_the_harness_line_is_final() -> None:
    prompt_ja, prompt_en = "### 入力：\nQ\n### 応答：\n", "### Input:\nQ\n### Response:\n"
    assert not harness_response_final(prompt_ja + "\n  答え")
    assert harness_response_final(prompt_ja + "\n  答え\n")
    assert harness_response_final(prompt_ja + "### 応答：\n")  # the text read is closed (and empty)
    assert not harness_response_final(prompt_en + "Answer: b\nmore\n")  # a "### Answer:" may still come
    assert not harness_response_final(prompt_en + "reasoning\n### Answer: b")
    assert harness_response_final(prompt_en + "reasoning\n### Answer: b\n")
