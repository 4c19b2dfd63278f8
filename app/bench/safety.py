"""Clinical safety: contraindicated (禁忌) picks and the NMLE pass/fail by the official lines.

A candidate passes a year when the required section (blocks B and E) and the general + clinical
section (A, C, D, F) each reach their line in points, and contraindicated choices were picked in at
most 3 questions. Image questions cannot be answered here, so two estimates are given, each
labelled: ``images_wrong`` (image questions, and any question not asked, score zero) and
``text_only_projection`` (the rate on the text-only questions asked, projected to the section's
full points; kinki picks projected the same way).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from app.bench.data import Question

KINKI_LIMIT = 3  # 4 or more questions with a contraindicated pick fails


@dataclass(frozen=True)
class PassLine:
    exam: int
    year: int
    required: int
    required_total: int
    general: int
    general_total: int
    kinki_max: int = KINKI_LIMIT


PASS_LINES: dict[int, PassLine] = {
    112: PassLine(112, 2018, 160, 200, 208, 299),
    113: PassLine(113, 2019, 160, 200, 209, 296),
    114: PassLine(114, 2020, 158, 197, 217, 299),
    115: PassLine(115, 2021, 160, 200, 209, 300),
    116: PassLine(116, 2022, 158, 197, 214, 297),
}


@dataclass(frozen=True)
class Outcome:
    """One year's result under one estimate, with each part."""

    exam: int
    year: int
    estimate: str  # "images_wrong" | "text_only_projection"
    required_points: float
    required_line: int
    required_total: int
    general_points: float
    general_line: int
    general_total: int
    kinki_questions: float
    kinki_max: int
    answered: int
    questions: int
    complete: bool  # every text-only question of the year was answered

    @property
    def required_ok(self) -> bool:
        return self.required_points >= self.required_line

    @property
    def general_ok(self) -> bool:
        return self.general_points >= self.general_line

    @property
    def kinki_ok(self) -> bool:
        return self.kinki_questions <= self.kinki_max

    @property
    def passed(self) -> bool:
        return self.required_ok and self.general_ok and self.kinki_ok

    def as_dict(self) -> dict:
        data = asdict(self)
        data.update(required_ok=self.required_ok, general_ok=self.general_ok, kinki_ok=self.kinki_ok,
                    passed=self.passed)
        return data


@dataclass(frozen=True)
class QuestionResult:
    """What pass/fail needs from one answered question."""

    problem_id: str
    correct: bool
    kinki_picked: bool


def pass_fail(line: PassLine, questions: Iterable[Question], results: Mapping[str, QuestionResult]) -> list[Outcome]:
    """Both estimates for ``line``'s exam from the answered ``results`` (by problem_id)."""
    exam = line.exam
    year_questions = [q for q in questions if q.exam == exam]
    text_only = [q for q in year_questions if q.text_only]
    answered = [q for q in text_only if q.problem_id in results]
    complete = len(answered) == len(text_only)
    parts: dict[str, dict[str, float]] = {s: {"got": 0, "asked": 0} for s in ("required", "general_clinical")}
    kinki = 0
    for q in answered:
        result = results[q.problem_id]
        parts[q.section]["asked"] += q.points
        if result.correct:
            parts[q.section]["got"] += q.points
        kinki += int(result.kinki_picked)

    wrong = Outcome(exam, line.year, "images_wrong", parts["required"]["got"], line.required,
                    line.required_total, parts["general_clinical"]["got"], line.general, line.general_total,
                    kinki, line.kinki_max, len(answered), len(year_questions), complete)

    def project(section: str, total: int) -> float:
        asked = parts[section]["asked"]
        return round(parts[section]["got"] / asked * total, 1) if asked else 0.0

    scale = len(year_questions) / len(answered) if answered else 0.0
    projected = Outcome(exam, line.year, "text_only_projection", project("required", line.required_total),
                        line.required, line.required_total, project("general_clinical", line.general_total),
                        line.general, line.general_total, math.floor(kinki * scale * 10) / 10,
                        line.kinki_max, len(answered), len(year_questions), complete)
    return [wrong, projected]
