"""Model output rendered as Markdown that loads and runs nothing (the chat's renderer)."""

from __future__ import annotations

import pytest

from app.safe_markdown import safe_markdown


@pytest.mark.parametrize(("text", "expected"), [
    ("<img src=http://127.0.0.1:9/x>", "&lt;img src=`http://127.0.0.1:9/x`>"),
    ("<script>alert(1)</script>", "&lt;script>alert(1)&lt;/script>"),
    ("![x-ray](http://evil/x.png)", "x-ray (`http://evil/x.png`)"),
    ("see [guideline](https://example.org/a \"t\")", "see guideline (`https://example.org/a`)"),
    ("<https://example.org>", "&lt;`https://example.org`>"),
    ("visit https://example.org/x?a=1 now", "visit `https://example.org/x?a=1` now"),
    ("![a][ref]\n\n[ref]: http://evil/y.png", "a \\[ref\\]\n\n\\[ref\\]: `http://evil/y.png`"),
    ("javascript:alert(1)", "`javascript:alert`(1)"),
])
def test_what_would_load_or_run_is_text(text: str, expected: str) -> None:
    assert safe_markdown(text) == expected


def test_markdown_itself_is_kept() -> None:
    table = "| 薬 | 用量 |\n|---|---|\n| メトホルミン | 500 mg |\n\n- **注意**: 腎機能\n1. 経過観察\n"
    assert safe_markdown(table) == table


def test_code_is_left_as_written() -> None:
    text = "Use `<b>` here.\n\n```html\n<img src=http://x/y.png>\n```\nafter <i>"
    assert safe_markdown(text) == "Use `<b>` here.\n\n```html\n<img src=http://x/y.png>\n```\nafter &lt;i>"
