"""The generate mode's stop rule never changes the line the paper's harness reads (vs. 256 tokens)."""

from __future__ import annotations

from app.bench.modes import MODES, Outcome, Request
from app.bench.prompting import PAPER_MAX_TOKENS, build_prompt, harness_prompt, harness_stop, harness_text
from app.extraction import harness_response, strip_reasoning
from tests.bench.test_harness_extraction import REASONING, corpus, corpus_question
from tests.scripted_engine import ScriptedEngine


def stop_point(prompt: str, continuation: str) -> int:
    """How many tokens (characters) the generate mode lets ``continuation`` run, as it streams."""
    stop = harness_stop(prompt)
    return next((n for n in range(1, len(continuation) + 1) if stop(continuation[:n])), len(continuation))


def test_stopping_early_reads_the_line_that_256_tokens_give() -> None:
    stopped_early = {"ja": 0, "en": 0}
    for language in stopped_early:
        for question, continuation in corpus(language):
            _, template = build_prompt(question, language)
            prompt = harness_prompt(question, language, template)
            generated = continuation[:PAPER_MAX_TOKENS]
            n = stop_point(prompt, generated)
            assert harness_response(harness_text(prompt, generated[:n])) == \
                harness_response(harness_text(prompt, generated)), (language, continuation)
            visible = strip_reasoning(generated[:n])
            if language == "ja":  # at the latest, once the first non-blank line is complete
                assert visible.lstrip().count("\n") <= 1, continuation
            elif n < len(generated):  # English stops early only after a "### Answer:"
                assert "### Answer:" in visible or "### 応答：\n" in visible, continuation
            stopped_early[language] += n < len(generated)
    assert stopped_early["ja"] >= 100 and stopped_early["en"] >= 30, stopped_early


def test_the_one_case_where_stopping_reads_differently_is_an_outranking_japanese_marker() -> None:
    question = corpus_question(1)
    _, template = build_prompt(question, "en")
    prompt = harness_prompt(question, "en", template)
    continuation = f"{REASONING['en']}\n### Answer: Renal hypoplasia\n### 応答：\nFetal hydrops\n"
    n = stop_point(prompt, continuation)
    assert continuation[:n].endswith("Renal hypoplasia\n")
    assert harness_response(harness_text(prompt, continuation[:n])) == "Renal hypoplasia"
    assert harness_response(harness_text(prompt, continuation)) == "Fetal hydrops"


def ask(mode: str, language: str, continuation: str, shots: int = 0) -> Outcome:
    question = corpus_question(7)
    prompt, template = build_prompt(question, language, shots=shots)
    engine = ScriptedEngine(lambda _prompt: continuation)
    outcome = MODES[mode].answer(engine, Request(question, language, prompt, template, PAPER_MAX_TOKENS, None))
    assert outcome is not None
    return outcome


def test_generate_and_paper_modes_score_alike_on_a_scripted_engine() -> None:
    for language in ("ja", "en"):
        for _, continuation in corpus(language)[:60]:
            fast, paper = ask("generate", language, continuation), ask("paper", language, continuation)
            assert fast.scored.paper_response == paper.scored.paper_response, continuation
            assert (fast.scored.gestalt_paper, fast.scored.exact) == (paper.scored.gestalt_paper, paper.scored.exact)
            assert fast.completion_tokens <= paper.completion_tokens


def test_english_reasoning_then_answer_is_scored_on_the_answer() -> None:
    continuation = f"{REASONING['en']}\n### Answer: Renal hypoplasia\nIt is Potter sequence.\n" + "x" * 300
    outcome = ask("generate", "en", continuation)
    assert outcome.finish_reason == "first_line"
    assert outcome.raw == f"{REASONING['en']}\n### Answer: Renal hypoplasia\n"
    assert outcome.scored.paper_response == "Renal hypoplasia"
    assert outcome.scored.response == REASONING["en"]  # the corrected reading keeps its own rule
    japanese = ask("generate", "ja", "腎低形成\n理由は羊水過少。\n")
    assert japanese.raw == "腎低形成\n" and japanese.finish_reason == "first_line"
    assert ask("generate", "en", "Renal hypoplasia\n").finish_reason == "stop"  # no "### Answer:": to the end


def test_few_shot_runs_read_the_models_answer_not_an_examples() -> None:
    for language, answer in (("ja", "腎低形成"), ("en", "Renal hypoplasia")):
        outcome = ask("generate", language, answer + "\nmore\n", shots=3)
        assert outcome.scored.paper_response == answer
