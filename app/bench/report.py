"""Summaries of stored answers: accuracy per metric, language, year, block and category; points;
abstentions and the Gestalt chance floor; contraindicated picks; pass/fail per year."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from app.bench.data import EXAMS, Dataset
from app.bench.metrics import METRICS, PRIMARY, tally
from app.bench.overlap import overlap_line
from app.bench.safety import PASS_LINES, QuestionResult, pass_fail
from app.bench.scoring import empty_answer_floor


def percent(fraction: float | None) -> str:
    """An accuracy as "52.3%", or "-" where there is none."""
    return f"{fraction * 100:.1f}%" if fraction is not None else "-"


def metric_totals(rows: Sequence[dict]) -> dict[str, dict[str, Any]]:
    """Every registered metric's aggregate over ``rows``."""
    return {name: m.aggregate(rows) for name, m in METRICS.items()}


def primary_accuracy(run: dict) -> float | None:
    """The primary metric's accuracy stored with a finished run (``runs.totals``), if any."""
    totals = json.loads(run["totals"]) if run.get("totals") else {}
    return totals.get("metrics", {}).get(PRIMARY, {}).get("accuracy")


def group(rows: Iterable[dict], key: str, metric: str = PRIMARY) -> dict[Any, dict[str, Any]]:
    groups: dict[Any, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r[key]].append(r)
    return {k: tally(v, metric) for k, v in sorted(groups.items(), key=lambda kv: str(kv[0]))}


def chance_floor(rows: Sequence[dict], dataset: Dataset | None) -> dict[str, Any] | None:
    """What an empty answer scores under ``gestalt_paper`` on the same questions and languages."""
    if dataset is None:
        return None
    by_id = dataset.by_id()
    hits = total = 0
    for r in rows:
        q = by_id.get(r["problem_id"])
        if q is None:
            continue
        total += 1
        hits += empty_answer_floor(q.problem_id, q.choices(r["language"]), q.answer)
    return {"correct": hits, "total": total, "accuracy": round(hits / total, 4) if total else None}


def points(rows: Sequence[dict], metric: str = "letter") -> dict[str, int]:
    return {"got": sum(r["points"] for r in rows if r[metric]), "total": sum(r["points"] for r in rows)}


def pass_fail_table(rows: Sequence[dict], dataset: Dataset, metric: str = "letter") -> list[dict]:
    """Per language and year, both estimates with their parts (only years the run touched)."""
    out = []
    by_lang: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_lang[r["language"]].append(r)
    for language, lang_rows in sorted(by_lang.items()):
        results = {r["problem_id"]: QuestionResult(r["problem_id"], bool(r[metric]), bool(r["contraindicated"]))
                   for r in lang_rows}
        lines = {**PASS_LINES, **dataset.pass_lines}
        for exam in sorted({r["exam"] for r in lang_rows}):
            if exam not in lines:
                continue
            for outcome in pass_fail(lines[exam], dataset.questions, results):
                out.append({"language": language, "metric": metric, **outcome.as_dict()})
    return out


def summarize(rows: Sequence[dict], dataset: Dataset | None = None) -> dict[str, Any]:
    """Everything ``bench show`` prints and the UI plots, for one run's answer rows."""
    summary: dict[str, Any] = {"answers": len(rows), "metrics": metric_totals(rows)}
    summary["by_language"] = {
        lang: metric_totals([r for r in rows if r["language"] == lang])
        for lang in sorted({r["language"] for r in rows})
    }
    summary["by_year"] = {EXAMS.get(k, k): v for k, v in group(rows, "exam").items()}
    summary["by_block"] = group(rows, "block")
    summary["by_category"] = group(rows, "category")
    summary["points"] = points(rows)
    summary["abstained"] = sum(int(bool(r["abstained"])) for r in rows)
    summary["contraindicated_questions"] = sum(int(bool(r["contraindicated"])) for r in rows)
    summary["chance_floor_gestalt_paper"] = chance_floor(rows, dataset)
    if dataset is not None:
        summary["pass_fail"] = pass_fail_table(rows, dataset)
    return summary


def format_summary(run: dict, summary: dict[str, Any]) -> str:
    """Plain text for the terminal."""
    lines = [
        f"Run {run['id']}: {run['model_file']} "
        f"({run.get('quantization') or '?'}, sha256 {str(run['model_sha256'])[:12]})",
        f"  {run.get('benchmark') or 'igakuqa'} · {run['mode']} · {run['language']} · set {run['question_set']} · "
        f"template {run['template']} · "
        f"{run['shots']}-shot · {run['status']} · {run['n_answered']}/{run['n_items']} answered",
        f"  {run['device']} · {run['backend']} {run['backend_version']} · data {str(run['data_fingerprint'])[:12]}",
        f"  engine {run.get('engine') or 'local'}{' at ' + run['endpoint'] if run.get('endpoint') else ''} · "
        f"{run.get('slots') or 1} at once",
        "",
        "Accuracy (correct/total):",
    ]
    overlap = overlap_line(run)
    if overlap:  # a model trained here: its training data's overlap with this set, beside the score
        lines[4:4] = [f"  {overlap}"]
    for lang, totals in summary["by_language"].items():
        for metric, t in totals.items():
            lines.append(f"  [{lang}] {METRICS[metric].description:<52} {t['correct']:>4}/{t['total']:<4} "
                         f"{percent(t['accuracy'])}")
    floor = summary.get("chance_floor_gestalt_paper")
    if floor and floor["accuracy"] is not None:
        lines.append(f"  Chance floor of the Gestalt metric (an empty answer): {percent(floor['accuracy'])}")
    lines.append(f"  Abstentions (response matches no choice): {summary['abstained']}")
    lines.append(f"  Questions with a contraindicated (禁忌) choice picked: {summary['contraindicated_questions']}")
    lines.append(f"  Points (letter match): {summary['points']['got']}/{summary['points']['total']}")
    lines.append("")
    for title, groups in (("year", summary["by_year"]), ("block", summary["by_block"])):
        parts = [f"{k} {percent(v['accuracy'])} ({v['total']})" for k, v in groups.items() if v["total"] and k]
        if parts:  # sets that are not a national exam have neither years nor blocks
            lines.append(f"By {title} ({PRIMARY}): " + ", ".join(parts))
    if summary.get("pass_fail"):
        lines.append("")
        lines.append("NMLE pass/fail (letter match; required B+E, general+clinical A+C+D+F, kinki <= 3):")
        for o in summary["pass_fail"]:
            label = ("image questions counted wrong" if o["estimate"] == "images_wrong"
                     else "text-only projection")
            verdict = "PASS" if o["passed"] else "FAIL"
            note = "" if o["complete"] else f" (incomplete: {o['answered']} text-only questions answered)"
            lines.append(
                f"  [{o['language']}] {o['year']} ({o['exam']}th) {label}: {verdict} · required "
                f"{o['required_points']}/{o['required_total']} (line {o['required_line']}) · general+clinical "
                f"{o['general_points']}/{o['general_total']} (line {o['general_line']}) · kinki "
                f"{o['kinki_questions']} (max {o['kinki_max']}){note}")
    return "\n".join(lines)
