"""Saved conversations in the local SQLite database (tables ``conversations`` and ``turns``).

History is off by default: nothing here runs unless the caller chose to keep it. Deleting really
deletes: the rows go, and the file is vacuumed and its write-ahead log emptied, so the text is not
left in free pages of the file either.

Each conversation has an ``owner``: the login that kept it (``None`` without a login). Every function
here sees only the conversations of the owner it is given, so on a shared server one user's patients
never appear in another's history.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import sqlite_utils

from app.chat import NOTICE, Conversation, Stamp, Turn
from app.db import connect
from app.errors import UserError
from app.safe_markdown import safe_markdown
from app.timestamps import utc_now

ENDINGS = {"cancelled": "*(stopped before the end / 途中で停止しました)*",  # finish reason -> the export's note
           "length": "*(cut off at the length limit / 長さの上限で打ち切り)*"}


class ConversationNotFound(UserError, LookupError):
    """No saved conversation has this id."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"No saved conversation {conversation_id!r} (deleted, or saved in another database). "
                         f"/ 会話 {conversation_id!r} は保存されていません。")


def save_turn(db_path: Path | str, conversation: Conversation, turn: Turn, owner: str | None = None) -> None:
    """Store ``turn`` (one of ``conversation``'s) and any earlier turn not stored yet, in one transaction,
    as ``owner``'s.

    The first turn creates the conversation's row. A turn stored at the same position before (the
    answer was regenerated) is replaced, and any stored after it are removed. If the stored
    conversation has gone on elsewhere (continued in another tab) or is another owner's, it is left
    as it is and this one is stored anew under a new id, so neither loses a turn.
    """
    position = next((i for i, t in enumerate(conversation.turns) if t is turn), None)
    if position is None:
        raise ValueError("save_turn: the turn is not in this conversation")
    first = conversation.turns[0]
    with connect(db_path) as db, db.atomic():
        stored = {row[0]: (row[1], row[2]) for row in db.execute(
            "select position, question, answer from turns where conversation_id = ?", [conversation.id])}
        others = db.execute("select 1 from conversations where id = ? and owner is not ?",
                            [conversation.id, owner]).fetchone()
        if others or _diverged(stored, conversation.turns, position):
            conversation.id, stored = uuid.uuid4().hex, {}
        db.table("conversations").upsert({
            "id": conversation.id, "created_at": conversation.created_at, "updated_at": utc_now(),
            "language": conversation.language, "title": conversation.title, "model_file": first.stamp.file_name,
            "dropped": conversation.dropped, "owner": owner,
        }, pk="id")
        db.execute("delete from turns where conversation_id = ? and position >= ?", [conversation.id, position])
        db.table("turns").insert_all(
            _turn_row(conversation.id, i, t) for i, t in enumerate(conversation.turns[: position + 1])
            if i == position or i not in stored
        )


def list_conversations(db_path: Path | str, owner: str | None = None) -> list[dict[str, Any]]:
    """``owner``'s saved conversations, the latest updated first: id, updated_at, title, model_file, n_turns."""
    if not Path(db_path).exists():
        return []
    with connect(db_path) as db:
        return [dict(row) for row in db.query(
            "select c.id, c.updated_at, c.title, c.model_file, count(t.id) as n_turns "
            "from conversations c left join turns t on t.conversation_id = c.id where c.owner is ? "
            "group by c.id order by c.updated_at desc, c.rowid desc", [owner])]


def resolve_conversation_id(db_path: Path | str, start: str, owner: str | None = None) -> str:
    """The id of ``owner``'s one saved conversation whose id is or begins with ``start`` (ids are listed cut
    short)."""
    start = start.strip().lower()
    matches = [row["id"] for row in list_conversations(db_path, owner) if start and row["id"].startswith(start)]
    if len(matches) > 1:
        raise UserError(f"{len(matches)} saved conversations have an id beginning with {start!r}: give more of it. "
                        f"/ {start!r} で始まる会話が複数あります。")
    if not matches:
        raise ConversationNotFound(start)
    return matches[0]


def load_conversation(db_path: Path | str, conversation_id: str, owner: str | None = None) -> Conversation:
    """``owner``'s saved conversation ``conversation_id``, to read or continue (another owner's is not found)."""
    if not Path(db_path).exists():
        raise ConversationNotFound(conversation_id)
    with connect(db_path) as db:
        row = next(db.query("select * from conversations where id = ? and owner is ?", [conversation_id, owner]),
                   None)
        if row is None:
            raise ConversationNotFound(conversation_id)
        turns = [_turn(r) for r in db.table("turns").rows_where("conversation_id = ?", [conversation_id],
                                                                 order_by="position")]
    return Conversation(id=row["id"], language=row["language"], turns=turns, dropped=row["dropped"] or 0,
                        created_at=row["created_at"])


def delete_conversation(db_path: Path | str, conversation_id: str, owner: str | None = None) -> None:
    """Delete one of ``owner``'s saved conversations, really: rows deleted, file vacuumed."""
    if not Path(db_path).exists():
        raise ConversationNotFound(conversation_id)
    with connect(db_path) as db:
        with db.atomic():
            if not db.execute("select 1 from conversations where id = ? and owner is ?",
                              [conversation_id, owner]).fetchone():
                raise ConversationNotFound(conversation_id)
            db.execute("delete from turns where conversation_id = ?", [conversation_id])
            db.execute("delete from conversations where id = ?", [conversation_id])
        _scrub(db)


def delete_all(db_path: Path | str, owner: str | None = None) -> int:
    """Delete every one of ``owner``'s saved conversations, really: rows deleted, file vacuumed; returns how
    many there were."""
    if not Path(db_path).exists():
        return 0
    with connect(db_path) as db:
        with db.atomic():
            count = int(db.execute("select count(*) from conversations where owner is ?", [owner]).fetchone()[0])
            db.execute("delete from turns where conversation_id in (select id from conversations where owner is ?)",
                       [owner])
            db.execute("delete from conversations where owner is ?", [owner])
        _scrub(db)
    return count


def export_markdown(conversation: Conversation) -> str:
    """The conversation as Markdown: notice, title, date, then each question, reasoning (quoted),
    answer, chosen option and model stamp. What the user, the model or a model file wrote goes through
    :func:`safe_markdown`: a Markdown viewer opening the file loads and runs nothing from it."""
    title = safe_markdown(_one_line(conversation.title)) or "Conversation / 会話"
    lines = [f"# {title}", "", f"*{NOTICE}*", "",
             f"- date / 日付: {conversation.created_at}", f"- turns / 回数: {len(conversation.turns)}"]
    if conversation.dropped:
        lines.append(f"- the oldest {conversation.dropped} turn(s) were left out of the model's context "
                     f"/ 最初の{conversation.dropped}回分はモデルの文脈から外されました")
    for number, turn in enumerate(conversation.turns, start=1):
        lines += ["", "---", "", f"## {number}. 質問 / Question", "", safe_markdown(turn.question)]
        if turn.choices:
            lines += ["", *(f"- {safe_markdown(line)}" for line in turn.user_text().splitlines()[1:])]
        lines += ["", "### 回答 / Answer", ""]
        if turn.thinking:
            reasoning = safe_markdown(turn.thinking).splitlines()
            lines += ["> 思考過程 / reasoning", ">", *(f"> {line}".rstrip() for line in reasoning), ""]
        lines.append(safe_markdown(turn.answer))
        if turn.stamp.finish_reason in ENDINGS:
            lines += ["", ENDINGS[turn.stamp.finish_reason]]
        if turn.chosen:
            lines += ["", f"**Chosen option / 選択肢:** {safe_markdown(turn.chosen)}"]
        lines += ["", f"Model / モデル: {safe_markdown(turn.stamp.text())} · {turn.asked_at}"]
    return "\n".join(lines) + "\n"


def _scrub(db: sqlite_utils.Database) -> None:
    """Rebuild the file without free pages and empty the write-ahead log, so deleted text is gone from disk."""
    db.execute("VACUUM")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _diverged(stored: dict[int, tuple[str, str]], turns: list[Turn], position: int) -> bool:
    """Whether the ``stored`` (question, answer) by position are not this conversation's own past before
    saving turn ``position``: a turn after it, an earlier one that differs, or another question at it."""
    return any(
        at > position or (at < position and pair != (turns[at].question, turns[at].answer))
        or (at == position and pair[0] != turns[at].question)
        for at, pair in stored.items()
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _turn_row(conversation_id: str, position: int, turn: Turn) -> dict[str, Any]:
    stamp = turn.stamp
    return {
        "conversation_id": conversation_id, "position": position, "asked_at": turn.asked_at,
        "question": turn.question, "choices": json.dumps(list(turn.choices), ensure_ascii=False),
        "chosen": turn.chosen, "answer": turn.answer, "thinking": turn.thinking, "model_file": stamp.file_name,
        "model_sha256": stamp.sha256, "quantization": stamp.quantization, "device": stamp.device,
        "engine": stamp.engine, "endpoint": stamp.endpoint, "tokens_per_second": stamp.tokens_per_second,
        "completion_tokens": stamp.completion_tokens, "finish_reason": stamp.finish_reason,
    }


def _turn(row: dict[str, Any]) -> Turn:
    stamp = Stamp(file_name=row["model_file"], sha256=row["model_sha256"], quantization=row["quantization"],
                  device=row["device"], engine=row["engine"], tokens_per_second=row["tokens_per_second"],
                  completion_tokens=row["completion_tokens"], finish_reason=row["finish_reason"],
                  endpoint=row["endpoint"])
    return Turn(question=row["question"], answer=row["answer"], thinking=row["thinking"], stamp=stamp,
                asked_at=row["asked_at"], choices=tuple(json.loads(row["choices"] or "[]")), chosen=row["chosen"])
