"""Markdown for the model card shown next to every answer."""

from __future__ import annotations

from app.engines.base import Engine, GenerationStats


def model_card_markdown(engine: Engine, stats: GenerationStats | None = None) -> str:
    """File, short hash, quantization, device and (after an answer) its speed."""
    card = engine.card
    lines = [
        f"**{card.name}** ({card.size_label or '?'}, {card.architecture})",
        f"- file / ファイル: `{card.file_name}` ({card.file_size / 2**20:,.0f} MiB)",
        f"- sha256: `{card.short_hash}`",
        f"- quantization / 量子化: **{card.quantization}**",
        f"- device / 実行: {engine.device} · context {engine.n_ctx}",
        f"- chat template: {'from the GGUF' if card.has_chat_template else 'absent: plain prompt format'}",
    ]
    if card.is_demo:
        lines.append("- ⚠️ demo model, not for clinical use / デモモデル（臨床使用不可）")
    if stats is not None and stats.completion_tokens:
        lines.append(
            f"- this answer / この回答: {stats.completion_tokens} tokens, "
            f"{stats.tokens_per_second:.1f} tok/s, {stats.seconds:.1f} s ({stats.finish_reason})"
        )
    return "\n".join(lines)
