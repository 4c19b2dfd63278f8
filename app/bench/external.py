"""Scoring an external predictions file (``bench score``).

Each line is one of:

- ``{"problem_id", "prediction": "a,c"}``: IgakuQA's format, scored with the letter metric by
  IgakuQA's own rule, so published baseline files score as they are;
- ``{"problem_id", "response": "..."}``: what the model wrote after the prompt (its continuation).
  The paper's metrics read it as the paper's harness does: after the question's zero-shot prompt in
  the paper's template for its language and choice count (:func:`app.bench.prompting.harness_text`),
  so an English "reasoning ... ``### Answer: X``" is read as X; the corrected metrics read its first
  non-empty line after the last response marker. Every metric is scored;
- ``{"problem_id", "full_response": "..."}``: prompt + continuation, as the harness's own result
  files hold it (they also hold its extracted ``response``; ``full_response`` is read first), read
  as it is. Every metric is scored.

Reasoning blocks are dropped before either reading (:mod:`app.extraction`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.bench.baselines import read_predictions
from app.bench.data import DataError, Dataset, Question
from app.bench.metrics import METRICS, igakuqa_letter_correct, tally
from app.bench.prompting import harness_prompt, harness_text, resolve_template
from app.bench.scoring import Scored, score_response
from app.extraction import answer_line, harness_response, strip_reasoning
from app.prompts import Language


def score_text(question: Question, language: Language, text: str, full: bool) -> Scored:
    """Every metric for a response line's ``text``: a full response (``full``) or a continuation."""
    template = resolve_template(None, language, question.n_choices)
    if full:
        paper_text = strip_reasoning(text)
    else:
        paper_text = harness_text(harness_prompt(question, language, template), text)
    response = answer_line(text, template.response_marker)
    return score_response(question.problem_id, response, question.choices(language), question.answer,
                          question.kinki, harness_response(paper_text))


def score_file(path: Path, dataset: Dataset, language: Language = "ja") -> dict[str, Any]:
    by_id = dataset.by_id()
    rows: dict[str, list[dict]] = {m: [] for m in METRICS}
    for item in read_predictions(Path(path)):
        number = item["_line"]
        question = by_id.get(item["problem_id"])
        if question is None:
            raise DataError(f"{path}:{number}: unknown problem_id {item['problem_id']!r}")
        field = next((f for f in ("prediction", "full_response", "response") if f in item), None)
        if field is None:
            raise DataError(f"{path}:{number}: needs a 'prediction', a 'response' or a 'full_response'")
        if not isinstance(item[field], str):  # null or a list would be scored as the text "None" or "['a']"
            raise DataError(f"{path}:{number}: field {field!r} is not a string")
        if field == "prediction":
            rows["letter"].append({"letter": igakuqa_letter_correct(question.problem_id, item[field],
                                                                    question.answer)})
        else:
            scored = score_text(question, language, item[field], field == "full_response")
            for metric in METRICS:
                rows[metric].append({metric: scored.verdicts[metric]})
    return {metric: tally(r, metric) for metric, r in rows.items() if r}
