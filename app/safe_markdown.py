"""Model output and questions as Markdown that renders but loads and runs nothing.

Lists, emphasis, tables, headings and code render as Markdown; everything that would make the
browser fetch or run something is shown as text instead: HTML tags (``<img src=...>``, ``<script>``,
autolinks ``<http://...>``) have their ``<`` written as ``&lt;``; images (``![alt](url)``) and links
(``[text](url)``) become their text followed by the address in a code span; bare addresses go in a
code span too, so nothing is clickable (the machine is offline, and a clinician should not be led
away from it). Code spans and fenced code blocks are left as they are: Markdown shows their
content literally.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_FENCE = re.compile(r"^(```|~~~)[^\n]*\n.*?(?:^\1[ \t]*$|\Z)", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
_LINK = re.compile(r"!?\[([^\]\n]*)\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'][^\n]*?[\"'])?\s*\)")
_REFERENCE = re.compile(r"!?\[([^\]\n]*)\]\[([^\]\n]*)\]")
_DEFINITION = re.compile(r"^ {0,3}\[([^\]\n]+)\]:\s*(\S+).*$", re.M)
_BARE_URL = re.compile(r"(?<!`)\b(?:https?|ftp|file|data|javascript):[^\s`<>()]*", re.I)


def _address(url: str) -> str:
    return f"`{url.replace('`', '')}`" if url else ""


def _outside_code(text: str) -> str:
    """The rules for text that is not code."""
    text = text.replace("<", "&lt;")
    text = _DEFINITION.sub(lambda m: f"\\[{m[1]}\\]: {_address(m[2])}", text)
    text = _LINK.sub(lambda m: f"{m[1]} ({_address(m[2])})", text)
    text = _REFERENCE.sub(lambda m: f"{m[1]} \\[{m[2]}\\]", text)
    text = _BARE_URL.sub(lambda m: _address(m[0]), text)
    return text.replace("![", "!\\[")


def safe_markdown(text: str) -> str:
    """``text`` as Markdown that renders without loading or running anything (see the module)."""
    return _apply_outside(_FENCE, text, lambda part: _apply_outside(_CODE_SPAN, part, _outside_code))


def _apply_outside(code: re.Pattern[str], text: str, rule: Callable[[str], str]) -> str:
    """``rule`` applied to the parts of ``text`` that ``code`` does not match; the matches kept as they are."""
    pieces: list[str] = []
    position = 0
    for match in code.finditer(text):
        pieces += [rule(text[position:match.start()]), match.group()]
        position = match.end()
    pieces.append(rule(text[position:]))
    return "".join(pieces)
