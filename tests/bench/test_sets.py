"""Question sets over the real data."""

from __future__ import annotations

import pytest

from app.bench.sets import SetError, SetSpec, parse_year, select


def test_set_sizes(dataset) -> None:
    assert len(select(dataset, SetSpec("paper"))) == 1455
    assert len(select(dataset, SetSpec("full"))) == 2000
    assert len(select(dataset, SetSpec("text-only"))) == 1471
    assert len(select(dataset, SetSpec("paper-strict"), "ja")) == 1450
    assert len(select(dataset, SetSpec("paper-strict"), "en")) == 1420
    year = select(dataset, SetSpec("full", year=116))
    assert len(year) == 400 and {q.exam for q in year} == {116}
    assert {q.block for q in select(dataset, SetSpec("paper", blocks="BE"))} == {"B", "E"}


def test_quick_is_stratified_and_reproducible(dataset) -> None:
    first = [q.problem_id for q in select(dataset, SetSpec("quick", quick_size=30))]
    assert first == [q.problem_id for q in select(dataset, SetSpec("quick", quick_size=30))]
    assert len(first) == len(set(first)) == 30
    picked = select(dataset, SetSpec("quick", quick_size=30))
    assert len({(q.exam, q.block) for q in picked}) == 30  # one per year/block stratum
    assert all(q.text_only and q.n_choices == 5 for q in picked)


def test_year_parsing_and_errors(dataset) -> None:
    assert parse_year("2022") == parse_year("116") == 116
    assert parse_year("2025") == parse_year("119") == 119  # newer exams (IgakuQA119)
    for bad in ("1999", "20", "next"):
        with pytest.raises(SetError):
            parse_year(bad)
    with pytest.raises(SetError):
        select(dataset, SetSpec("nope"))
