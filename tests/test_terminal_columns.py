"""Columns of `bench list` and `bench data list` stay in line with Japanese text in them."""

from __future__ import annotations

from app.terminal_columns import columns, fit


def test_wide_characters_take_two_columns_and_are_never_cut_in_half() -> None:
    assert columns("研修医 2024") == 11
    assert fit("研修医試験2024", 10) == "研修医試験"
    assert fit("研修医試験2024", 9) == "研修医試 " and columns(fit("研修医試験2024", 9)) == 9
    assert fit("quick", 8) == "quick   " and fit("", 3) == "   "
