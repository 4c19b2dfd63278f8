"""A conversation as ``gr.Chatbot`` messages: safe Markdown, reasoning folded apart, a model stamp under each answer.

Every text from the user or the model goes through :func:`safe_markdown` (it renders, but loads and
runs nothing); the stamp, built from GGUF metadata, is escaped to plain text.
"""

from __future__ import annotations

from typing import Any

from app.chat import Conversation, Stamp, Turn
from app.extraction import LETTERS
from app.safe_markdown import safe_markdown
from app.ui.cards import escape_markdown
from app.ui.i18n import t

REASONING_TITLE = "思考過程 / reasoning"
ENDINGS = {"cancelled": "stopped", "length": "cut_off"}  # finish reason -> the note under an answer it cut short

Message = dict[str, Any]


def user_message(question: str, choices: tuple[str, ...] = ()) -> Message:
    """The question as the user's message, its choices (if any) one per line below it."""
    lines = [f"- ({letter}) {safe_markdown(choice)}" for letter, choice in zip(LETTERS, choices, strict=False)]
    return {"role": "user", "content": "\n\n".join([safe_markdown(question), "\n".join(lines)] if lines
                                                    else [safe_markdown(question)])}


def reasoning_message(thinking: str, done: bool) -> Message:
    """The reasoning, as a collapsed message of its own (``pending`` while the model still thinks)."""
    return {"role": "assistant", "content": safe_markdown(thinking),
            "metadata": {"title": REASONING_TITLE, "status": "done" if done else "pending"}}


def answer_message(answer: str, lang: str, chosen: str | None = None, stamp: Stamp | None = None) -> Message:
    """The answer; for a finished turn, the option it picked (``chosen`` "" for none), whether it was
    stopped or cut off at the token limit, and the model stamp under it."""
    parts = [safe_markdown(answer)]
    if chosen is not None:
        parts.append(f"**{t('chosen', lang)}:** {escape_markdown(chosen or t('abstained', lang))}")
    if stamp is not None:
        if stamp.finish_reason in ENDINGS:
            parts.append(f"*{t(ENDINGS[stamp.finish_reason], lang)}*")
        parts.append(f"🏷️ *{escape_markdown(stamp.text())}*")
    return {"role": "assistant", "content": "\n\n".join(part for part in parts if part)}


def note_message(text: str) -> Message:
    """A note from the app (not the model) in the chat."""
    return {"role": "assistant", "content": escape_markdown(text)}


def turn_messages(turn: Turn, lang: str) -> list[Message]:
    """One finished turn: question, reasoning (if any), answer with its stamp."""
    messages = [user_message(turn.question, turn.choices)]
    if turn.thinking:
        messages.append(reasoning_message(turn.thinking, done=True))
    messages.append(answer_message(turn.answer, lang, turn.chosen if turn.choices else None, turn.stamp))
    return messages


def conversation_messages(conversation: Conversation | None, lang: str) -> list[Message]:
    """Every turn of ``conversation``; a note before the first turn the model still sees, if earlier ones were
    left out."""
    if conversation is None:
        return []
    messages: list[Message] = []
    for index, turn in enumerate(conversation.turns):
        if conversation.dropped and index == conversation.dropped:
            messages.append(note_message(t("dropped_note", lang).format(n=conversation.dropped)))
        messages += turn_messages(turn, lang)
    return messages


def streaming_messages(question: str, choices: tuple[str, ...], thinking: str, answer: str) -> list[Message]:
    """The turn being answered: question, reasoning so far, answer so far."""
    messages = [user_message(question, choices)]
    if thinking:
        messages.append(reasoning_message(thinking, done=bool(answer)))
    if answer or not thinking:
        messages.append(answer_message(answer, "en"))
    return messages
