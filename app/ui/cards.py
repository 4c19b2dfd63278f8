"""Markdown for the model card shown next to every answer."""

from __future__ import annotations

import re

from app.engines.base import Engine, GenerationStats
from app.gguf_metadata import printable

_HTML_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# Every ASCII punctuation character, except "_" between letters or digits (Q4_K_M): no emphasis there.
_MARKDOWN_SPECIAL = re.compile(r"[!-/:-@\[-^`{-~]|(?<![^\W_])_|_(?![^\W_])")


def escape_markdown(text: str) -> str:
    """``text`` shown literally by Gradio's Markdown: no tags, images, links, emphasis or LaTeX.

    ``<``, ``>`` and ``&`` become HTML entities, every other ASCII punctuation character is
    backslash-escaped (CommonMark allows that for all of them; an underscore inside a word is left
    as it is), control characters, newlines included, become visible escapes so the text cannot
    start a new Markdown block, and surrounding spaces are dropped (they could start a code block).
    """
    return _MARKDOWN_SPECIAL.sub(
        lambda match: _HTML_ENTITIES.get(match.group(), "\\" + match.group()), printable(text).strip()
    )


def model_card_markdown(engine: Engine, stats: GenerationStats | None = None) -> str:
    """File, short hash, quantization, device, the licence and use notice the file declares, and (after an
    answer) its speed."""
    card = engine.card
    name, size_label, architecture, file_name, quantization = map(
        escape_markdown, (card.name, card.size_label or "?", card.architecture, card.file_name, card.quantization)
    )
    lines = [f"**{name}** ({size_label}, {architecture})"]
    if card.endpoint:  # a model seen only through its server: the id it serves, no file or hash to show
        lines += [f"- served model / モデルID: {file_name}",
                  f"- endpoint / 接続先: {escape_markdown(card.endpoint)}",
                  "- chat template: the server's"]
    else:
        lines += [f"- file / ファイル: {file_name} ({card.file_size / 2**20:,.0f} MiB)",
                  f"- sha256: `{card.short_hash}`",
                  f"- quantization / 量子化: **{quantization}**",
                  f"- chat template: {'from the GGUF' if card.has_chat_template else 'absent: plain prompt format'}"]
    lines.append(f"- engine / エンジン: {engine.kind}, {escape_markdown(engine.backend_version)} · "
                 f"{escape_markdown(engine.device)} · context {engine.n_ctx} · "
                 f"{engine.slots} at once / 同時{engine.slots}件")
    if card.license:
        lines.append(f"- license / ライセンス: {escape_markdown(card.license)}")
    if card.usage_warning:
        lines.append(f"- ⚠️ the model's own notice / モデル自身の注意書き: {escape_markdown(card.usage_warning)}")
    if card.is_demo:
        lines.append("- ⚠️ demo model, not for clinical use / デモモデル（臨床使用不可）")
    if stats is not None and stats.completion_tokens:
        lines.append(
            f"- this answer / この回答: {stats.completion_tokens} tokens, "
            f"{stats.tokens_per_second:.1f} tok/s, {stats.seconds:.1f} s ({stats.finish_reason})"
        )
    return "\n".join(lines)
