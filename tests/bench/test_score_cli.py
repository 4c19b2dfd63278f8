"""``bench score`` on IgakuQA's published baseline files reproduces IgakuQA's own scorer exactly."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from app.bench.cli import bench

BLOCKS = ["2018/112-A", "2018/112-B", "2020/114-C", "2022/116-A", "2022/116-E"]


def igakuqa_reference_accuracy(data: Path, blocks: list[str], model: str) -> tuple[int, int]:
    """IgakuQA's scripts/evaluate_main.py ``accuracy``, re-stated independently, block by block."""
    correct = count = 0
    for block in blocks:
        preds = [json.loads(x) for x in (data / "baseline_results" / f"{block}_{model}.jsonl").read_text().splitlines()]
        golds = [json.loads(x) for x in (data / "data" / f"{block}.jsonl").read_text().splitlines()]
        assert len(preds) == len(golds)
        for pred, gold in zip(preds, golds, strict=True):
            assert pred["problem_id"] == gold["problem_id"]
            prediction = sorted(pred["prediction"].split(","))
            if gold["problem_id"] == "116A71":
                correct += 1
            elif gold["problem_id"] == "112B30" and prediction in (["a"], ["d"]):
                correct += 1
            elif prediction == sorted(gold["answer"]):
                correct += 1
            count += 1
    return correct, count


def concat(data: Path, blocks: list[str], model: str, out: Path) -> Path:
    out.write_text("".join((data / "baseline_results" / f"{b}_{model}.jsonl").read_text() for b in blocks))
    return out


def test_gpt4_baseline_matches_igakuqa_rule(igakuqa_dir: Path, tmp_path: Path) -> None:
    for model in ("gpt4", "student-majority"):
        predictions = concat(igakuqa_dir, BLOCKS, model, tmp_path / f"{model}.jsonl")
        result = CliRunner().invoke(bench, ["score", "--predictions", str(predictions), "--data-dir",
                                            str(igakuqa_dir), "--json"])
        assert result.exit_code == 0, result.output
        scores = json.loads(result.output)
        correct, count = igakuqa_reference_accuracy(igakuqa_dir, BLOCKS, model)
        assert set(scores) == {"letter"}
        assert scores["letter"] == {"correct": correct, "total": count, "accuracy": round(correct / count, 4)}
    assert 300 < count < 400


def test_response_files_get_every_metric(igakuqa_dir: Path, tmp_path: Path) -> None:
    lines = [
        {"problem_id": "116A1", "response": "α遮断薬が第一選択薬である。\n理由: ..."},  # right (c)
        {"problem_id": "116A2", "response": "### 応答：\n陽性判明の時点"},  # wrong (gold c)
        {"problem_id": "116A3", "response": ""},  # empty: gold a, the chance floor hits
    ]
    path = tmp_path / "responses.jsonl"
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines))
    result = CliRunner().invoke(bench, ["score", "--predictions", str(path), "--lang", "ja", "--data-dir",
                                        str(igakuqa_dir), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    assert set(scores) == {"letter", "gestalt_paper", "gestalt", "exact"}
    assert scores["gestalt_paper"] == {"correct": 2, "total": 3, "accuracy": 0.6667}
    assert scores["gestalt"]["correct"] == 2 and scores["exact"]["correct"] == 1 and scores["letter"]["correct"] == 1


def test_unknown_problem_id_is_an_error(igakuqa_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem_id": "116A1", "prediction": "c"}\n{"problem_id": "999Z1", "prediction": "a"}\n')
    result = CliRunner().invoke(bench, ["score", "--predictions", str(path), "--data-dir", str(igakuqa_dir)])
    assert result.exit_code != 0 and "bad.jsonl:2: unknown problem_id '999Z1'" in result.output
