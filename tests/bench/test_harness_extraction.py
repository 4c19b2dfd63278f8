"""The paper harness's answer extraction, checked on 400 continuations built to exercise its rules.

The reference here is a plain re-reading of japanese-lm-med-harness ``eval_bench.py`` (lines
273-283: the first of "### 応答：\\n", "### Answer:", "### Response:" that occurs, the text between
its first and second occurrence, strip, first "\\n"-line, strip; lines 319-351: "." removed, the
choice most similar to the response by the symmetric SequenceMatcher ratio, compared with the gold
text), written with ``str.find`` so it shares no code with :mod:`app.extraction`.
"""

from __future__ import annotations

import json
import random
from difflib import SequenceMatcher
from pathlib import Path

from app.bench.data import Question
from app.bench.prompting import build_prompt, harness_prompt, harness_text
from app.extraction import LETTERS, answer_line, harness_response, strip_reasoning
from app.prompts import Language, few_shot_examples
from tests.bench.conftest import write_block
from tests.conftest import run_cli

CHOICES = {
    "ja": [("夜間高血圧となることが多い。", "肥満患者では減量を推奨する。", "α遮断薬が第一選択薬である。",
            "家庭血圧では早朝に高血圧となることが多い。", "持続的気道陽圧法〈CPAP〉で降圧が期待される。"),
           ("酸素欠乏症", "硫化水素中毒", "一酸化炭素中毒", "二酸化炭素中毒", "二酸化窒素中毒"),
           ("食道閉鎖", "心室中隔欠損", "腎低形成", "鎖肛", "胎児水腫")],
    "en": [("Nocturnal hypertension is common.", "Weight loss is recommended for obese patients.",
            "Alpha blockers are the first choice.", "Home blood pressure is often high in the early morning.",
            "CPAP is expected to lower blood pressure."),
           ("Oxygen deficiency", "Hydrogen sulfide poisoning", "Carbon monoxide poisoning",
            "Carbon dioxide poisoning", "Nitrogen dioxide poisoning"),
           ("Esophageal atresia", "Ventricular septal defect", "Renal hypoplasia", "Anorectal malformation",
            "Fetal hydrops")],
}
REASONING = {"ja": "まず情報を整理すると、患者は高齢で症状は急性である。",
             "en": "Let us summarize the available information first."}
# {a}: the right choice's text, {w}: a wrong one's, {r}: a reasoning line
PATTERNS = {
    "ja": ["{a}\n理由は省略。", "\n\n{a}\n", "  {a}  \n{w}", "{r}\n{a}\n", "### 応答：\n{a}\n", "{r}\n### 応答：\n{a}",
           "{a}### 応答：\n{w}", "### Answer: {a}\n", "<think>\n{w}?\n</think>\n{a}\n", "{a}\r\n{w}",
           "\u3000{a}\n", "{a}", "", "### 応答:\n{w}\n{a}", "答えは{a}です。\n", "### 応答： {a}\n{w}",
           "### 応答：\n### 応答：\n{a}", "{r}" * 6 + "\n{a}", "\n \n{w}\n### Answer: {a}", "{a}。{w}。\n"],
    "en": ["{r}\n### Answer: {a}\n{w}", "{r}\n### Answer:\n\n{a}\nExplanation follows.", "{a}\n",
           "{r}\n{r}\n### Answer: {a}", "### Answer: {a}\n### Answer: {w}", "### Answer:### Answer: {a}",
           "{r}\n### Answer：{a}\n", "{r}\n### Response:\n{a}\n", "{r}\n### 応答：\n{a}\n",
           "<think>{r}\n### Answer: {w}</think>\n### Answer: {a}\n",
           "{r} ### Answer: {a}", "\n\n{r}\r\n### Answer: {a}\r\n", "", "{r} " * 8 + "\n### Answer: {a}",
           "{w}\n### Answer:   \n\n  {a}  \n", "### answer: {w}\n{a}", "{a}\n### Answer: {w}", "{r}\n###Answer: {a}\n",
           "{r}\n### Answer: {a}", "\u3000{r}\n### Answer: {w}, {a}\n"],
}
PER_LANGUAGE = 200


def harness_reading(full_response: str) -> str:
    """eval_bench.py's answer line, re-read plainly (see the module docstring)."""
    text = full_response
    for marker in ("### 応答：\n", "### Answer:", "### Response:"):
        start = full_response.find(marker)
        if start != -1:
            start += len(marker)
            end = full_response.find(marker, start)
            text = full_response[start:] if end == -1 else full_response[start:end]
            break
    text = text.strip()
    cut = text.find("\n")
    return (text if cut == -1 else text[:cut]).strip()


def harness_gestalt_correct(response: str, choices: tuple[str, ...], gold: str) -> bool:
    """eval_bench.py's Gestalt match for a single-answer question."""
    cleaned = response.replace(".", "").strip()
    scores = [(SequenceMatcher(None, c, cleaned).ratio() + SequenceMatcher(None, cleaned, c).ratio()) / 2
              for c in choices]
    return choices[scores.index(max(scores))] == gold


def harness_exact_correct(response: str, gold: str) -> bool:
    return gold.replace(".", "").strip() == response.replace(".", "").strip()


def corpus_question(number: int) -> Question:
    """Question ``number``: the same choices (in both languages) and gold whichever corpus asks it."""
    rng = random.Random(number)
    which = rng.randrange(len(CHOICES["ja"]))
    return Question(problem_id=f"116A{number}", exam=116, year=2022, block="A",
                    text_ja=f"問題{number}: 最も適切なのはどれか。", choices_ja=CHOICES["ja"][which],
                    text_en=f"Question {number}: which is most appropriate?", choices_en=CHOICES["en"][which],
                    answer=(rng.choice(LETTERS[:5]),), points=1, text_only=True)


def corpus(language: str) -> list[tuple[Question, str]]:
    """200 (question, continuation) pairs: every pattern, with right and wrong answers, seeded."""
    rng = random.Random(f"harness-{language}")
    items = []
    for number in range(1, PER_LANGUAGE + 1):
        question = corpus_question(number)
        choices = question.choices(language)
        right = choices[LETTERS.index(question.answer[0])]
        wrong = rng.choice([c for c in choices if c != right])
        if rng.random() < 0.4:  # a wrong answer where the pattern puts the right one
            right, wrong = wrong, right
        pattern = PATTERNS[language][number % len(PATTERNS[language])]
        items.append((question, pattern.format(a=right, w=wrong, r=REASONING[language])))
    return items


def full_response(question: Question, language: str, continuation: str) -> str:
    """The harness's full_response for a zero-shot prompt: prompt + continuation (reasoning dropped)."""
    prompt, _ = build_prompt(question, language)
    return prompt + strip_reasoning(continuation)


def test_the_harness_reading_on_every_continuation() -> None:
    for language in ("ja", "en"):
        for question, continuation in corpus(language):
            _, template = build_prompt(question, language)
            expected = harness_reading(full_response(question, language, continuation))
            text = harness_text(harness_prompt(question, language, template), continuation)
            assert harness_response(text) == expected, (language, continuation)


def test_the_corpus_exercises_where_the_two_readings_differ() -> None:
    differ = {"ja": 0, "en": 0}
    for language in differ:
        for question, continuation in corpus(language):
            _, template = build_prompt(question, language)
            corrected = answer_line(continuation, template.response_marker)
            differ[language] += corrected != harness_reading(full_response(question, language, continuation))
    assert differ["ja"] >= 20 and differ["en"] >= 100, differ


def test_few_shot_examples_are_not_read_as_the_answer() -> None:
    question = corpus_question(1)
    examples: tuple[tuple[Language, str], ...] = (("ja", "腎低形成"), ("en", "Renal hypoplasia"))
    for language, answer in examples:
        prompt, template = build_prompt(question, language, shots=3)
        # the harness as it is (k = 0) would read the first worked example's answer
        assert harness_reading(prompt + answer + "\n") == few_shot_examples(language)[0]["answer"]
        assert harness_response(harness_text(harness_prompt(question, language, template), answer + "\n")) == answer


def write_corpus_data(root: Path, items: list[tuple[Question, str]]) -> Path:
    """An IgakuQA-shaped folder whose block 116-A holds the corpus questions."""
    questions = [q for q, _ in items]
    ja = [json.dumps({"problem_id": q.problem_id, "problem_text": q.text_ja, "choices": list(q.choices_ja),
                      "text_only": True, "answer": list(q.answer), "points": "1"}, ensure_ascii=False)
          for q in questions]
    en = [json.dumps({"problem_id": q.problem_id, "problem_text_en": q.text_en, "choices_en": list(q.choices_en),
                      "answer": list(q.answer)}, ensure_ascii=False) for q in questions]
    meta = [json.dumps({"problem_id": q.problem_id, "category": "test", "kinki": [], "human_accuracy": "50.0"})
            for q in questions]
    # "" (the Japanese file) is no identifier, so only ** can pass it; mypy matches the dict to every parameter
    return write_block(root, n=PER_LANGUAGE, **{"": ja, "_translate": en, "_metadata": meta})  # type: ignore[arg-type]


def test_bench_score_counts_what_the_harness_counts(tmp_path: Path) -> None:
    items = {language: corpus(language) for language in ("ja", "en")}
    root = write_corpus_data(tmp_path / "igakuqa", items["ja"])
    for language, pairs in items.items():
        gestalt = exact = 0
        lines = []
        for question, continuation in pairs:
            choices = question.choices(language)
            gold = choices[LETTERS.index(question.answer[0])]
            response = harness_reading(full_response(question, language, continuation))
            gestalt += harness_gestalt_correct(response, choices, gold)
            exact += harness_exact_correct(response, gold)
            lines.append(json.dumps({"problem_id": question.problem_id, "response": continuation}, ensure_ascii=False))
        predictions = tmp_path / f"{language}.jsonl"
        predictions.write_text("\n".join(lines) + "\n", encoding="utf-8")
        result = run_cli("bench", "score", "--predictions", str(predictions), "--lang", language,
                         "--data-dir", str(root), "--json")
        assert result.returncode == 0, result.stderr
        scores = json.loads(result.stdout)
        assert scores["gestalt_paper"]["correct"] == gestalt and scores["gestalt_paper"]["total"] == PER_LANGUAGE
        assert scores["exact"]["correct"] == exact
        assert 20 < gestalt < 180  # the corpus has right and wrong answers


def test_bench_score_reads_a_harness_result_file_as_it_is(tmp_path: Path) -> None:
    items = corpus("ja")
    root = write_corpus_data(tmp_path / "igakuqa", items)
    question, continuation = items[5]
    full = full_response(question, "ja", continuation)
    line = {"problem_id": question.problem_id, "full_response": full, "response": harness_reading(full)}
    predictions = tmp_path / "result.jsonl"
    predictions.write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    result = run_cli("bench", "score", "--predictions", str(predictions), "--lang", "ja", "--data-dir", str(root),
                     "--json")
    assert result.returncode == 0, result.stderr
    choices = question.choices("ja")
    expected = harness_gestalt_correct(harness_reading(full), choices, choices[LETTERS.index(question.answer[0])])
    assert json.loads(result.stdout)["gestalt_paper"]["correct"] == int(expected)
