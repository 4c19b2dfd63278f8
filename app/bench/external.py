"""Scoring an external predictions file (``bench score``).

Each line is ``{"problem_id", "prediction": "a,c"}`` (IgakuQA's format: the letter metric, by
IgakuQA's own rule, so published baseline files score as they are) or
``{"problem_id", "response": "free text"}`` (the first line of the response, after a response
marker if it holds one, scored with every metric).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.bench.baselines import read_predictions
from app.bench.data import DataError, Dataset
from app.bench.metrics import METRICS, igakuqa_letter_correct, tally
from app.bench.scoring import score_response
from app.extraction import answer_line
from app.prompts import Language, default_template


def score_file(path: Path, dataset: Dataset, language: Language = "ja") -> dict[str, Any]:
    by_id = dataset.by_id()
    marker = default_template(language, 5).response_marker
    rows: dict[str, list[dict]] = {m: [] for m in METRICS}
    for item in read_predictions(Path(path)):
        number = item["_line"]
        question = by_id.get(item["problem_id"])
        if question is None:
            raise DataError(f"{path}:{number}: unknown problem_id {item['problem_id']!r}")
        if "prediction" in item:
            rows["letter"].append({"letter": igakuqa_letter_correct(
                question.problem_id, str(item["prediction"]), question.answer)})
        elif "response" in item:
            response = answer_line(str(item["response"]), marker)
            scored = score_response(question.problem_id, response, question.choices(language),
                                    question.answer, question.kinki)
            for metric in METRICS:
                rows[metric].append({metric: scored.verdicts[metric]})
        else:
            raise DataError(f"{path}:{number}: needs a 'prediction' or a 'response'")
    return {metric: tally(r, metric) for metric, r in rows.items() if r}
