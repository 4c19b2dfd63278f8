"""Comparing two runs question by question, with an exact McNemar test on the paired difference."""

from __future__ import annotations

from math import comb
from typing import Any

from app.bench.metrics import PRIMARY


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: b = only A correct, c = only B correct."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def compare_answers(rows_a: list[dict], rows_b: list[dict], metric: str = PRIMARY) -> dict[str, Any]:
    """Paired comparison on the (problem_id, language) pairs both runs answered."""
    a = {(r["problem_id"], r["language"]): r for r in rows_a}
    b = {(r["problem_id"], r["language"]): r for r in rows_b}
    shared = sorted(set(a) & set(b))
    both = only_a = only_b = neither = 0
    differences = []
    other_text = sum(a[key]["raw_output"] != b[key]["raw_output"] for key in shared)
    for key in shared:
        ra, rb = bool(a[key][metric]), bool(b[key][metric])
        if ra and rb:
            both += 1
        elif ra:
            only_a += 1
        elif rb:
            only_b += 1
        else:
            neither += 1
        if ra != rb or a[key]["picked"] != b[key]["picked"]:
            differences.append({"problem_id": key[0], "language": key[1], "gold": a[key]["gold"],
                                "picked_a": a[key]["picked"], "correct_a": ra,
                                "picked_b": b[key]["picked"], "correct_b": rb})
    n = len(shared)
    return {
        "metric": metric, "paired": n, "only_in_a": len(set(a) - set(b)), "only_in_b": len(set(b) - set(a)),
        "accuracy_a": round((both + only_a) / n, 4) if n else None,
        "accuracy_b": round((both + only_b) / n, 4) if n else None,
        "difference": round((only_b - only_a) / n, 4) if n else None,
        "both_correct": both, "only_a_correct": only_a, "only_b_correct": only_b, "neither": neither,
        "mcnemar_exact_p": mcnemar_exact(only_a, only_b), "different_outputs": other_text,
        "differences": differences,
    }
