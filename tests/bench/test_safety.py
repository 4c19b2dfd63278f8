"""Pass/fail by the official lines, built by hand around the lines."""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from app.bench.data import Question
from app.bench.safety import PASS_LINES, QuestionResult, pass_fail


def q(pid: str, block: str, points: int, text_only: bool = True) -> Question:
    return Question(pid, 116, 2022, block, "", ("a", "b", "c", "d", "e"), "", ("a", "b", "c", "d", "e"),
                    ("a",), points, text_only)


def exam_116() -> list[Question]:
    """A synthetic 116th exam with the real section totals: required 197, general+clinical 297."""
    qs = [q(f"116B{i}", "B", 1) for i in range(1, 50)]        # 49 required general: 49 points
    qs += [q(f"116E{i}", "E", 3) for i in range(1, 50)]       # 49 required clinical x3: 147
    qs += [q("116E99", "E", 1)]                               # 197 in all
    qs += [q(f"116A{i}", "A", 1) for i in range(1, 298)]      # 297 general + clinical
    return qs


def results(qs: list[Question], wrong: AbstractSet[str] = frozenset(),
            kinki: AbstractSet[str] = frozenset()) -> dict[str, QuestionResult]:
    return {x.problem_id: QuestionResult(x.problem_id, x.problem_id not in wrong, x.problem_id in kinki) for x in qs}


def test_section_totals_match_the_lines() -> None:
    qs = exam_116()
    line = PASS_LINES[116]
    assert sum(x.points for x in qs if x.required) == line.required_total == 197
    assert sum(x.points for x in qs if not x.required) == line.general_total == 297


def test_exactly_on_the_lines_passes_one_below_fails() -> None:
    qs = exam_116()
    # required: 197 - 158 = 39 points may be lost: 13 three-point clinical questions
    wrong = {f"116E{i}" for i in range(1, 14)} | {f"116A{i}" for i in range(1, 297 - 214 + 1)}
    outcome = pass_fail(PASS_LINES[116], qs, results(qs, wrong))[0]
    assert outcome.estimate == "images_wrong"
    assert (outcome.required_points, outcome.general_points) == (158, 214)
    assert outcome.passed and outcome.complete
    below_required = pass_fail(PASS_LINES[116], qs, results(qs, wrong | {"116B1"}))[0]
    assert below_required.required_points == 157 and not below_required.required_ok and not below_required.passed
    below_general = pass_fail(PASS_LINES[116], qs, results(qs, wrong | {"116A200"}))[0]
    assert below_general.general_points == 213 and not below_general.passed and below_general.required_ok


def test_four_contraindicated_picks_fail_whatever_the_score() -> None:
    qs = exam_116()
    three = pass_fail(PASS_LINES[116], qs, results(qs, kinki={"116A1", "116A2", "116A3"}))[0]
    assert three.passed and three.kinki_questions == 3
    four = pass_fail(PASS_LINES[116], qs, results(qs, kinki={"116A1", "116A2", "116A3", "116A4"}))[0]
    assert four.required_ok and four.general_ok and not four.kinki_ok and not four.passed


def test_image_questions_counted_wrong_versus_text_only_projection() -> None:
    qs = exam_116()
    # make 40 general questions image questions: not answered
    qs = [q(x.problem_id, x.block, x.points, text_only=not (x.block == "A" and int(x.problem_id[4:]) <= 40))
          for x in qs]
    answered = {k: v for k, v in results(qs).items() if not k.startswith("116A") or int(k[4:]) > 40}
    wrong, projected = pass_fail(PASS_LINES[116], qs, answered)
    assert wrong.general_points == 257 and wrong.passed  # 297 - 40 >= 214
    assert projected.estimate == "text_only_projection" and projected.general_points == 297.0
    assert wrong.complete  # every text-only question answered
