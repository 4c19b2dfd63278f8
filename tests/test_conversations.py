"""Saved conversations: save, list, load, delete (really gone from the file), Markdown export, and the
migration on a database from an older release."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from app.chat import NOTICE, Conversation, Stamp, Turn
from app.conversations import (
    ConversationNotFound,
    delete_all,
    delete_conversation,
    export_markdown,
    list_conversations,
    load_conversation,
    resolve_conversation_id,
    save_turn,
)
from app.db import connect
from app.errors import UserError

FIXTURE = Path(__file__).parent / "fixtures" / "jmedllm-0.1.0.db"
STAMP = Stamp(file_name="jmedllm-7b.Q4_K_M.gguf", sha256="ab" * 32, quantization="Q4_K_M", device="CUDA0",
              engine="llama-server", tokens_per_second=31.25, completion_tokens=42, finish_reason="stop")
SECRET = "患者ヤマダタロウ78歳の腎機能"  # text that must be gone from the file after deletion


def make_turn(question: str, answer: str, thinking: str = "", choices: tuple[str, ...] = (), chosen: str = "",
              stamp: Stamp = STAMP) -> Turn:
    return Turn(question=question, answer=answer, thinking=thinking, stamp=stamp,
                asked_at="2026-11-25T09:00:00+00:00", choices=choices, chosen=chosen)


def add(db: Path, conversation: Conversation, turn: Turn) -> Turn:
    """Append ``turn`` as a reply would, and save it."""
    conversation.turns.append(turn)
    save_turn(db, conversation, turn)
    return turn


def file_bytes(db: Path) -> bytes:
    """The database file and its write-ahead log, as stored on disk."""
    return b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists())


def test_save_list_and_load_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "jmedllm.db"
    first = Conversation(language="ja")
    add(db, first, make_turn("インスリンを分泌する臓器はどれか。" * 10, "膵臓\nβ細胞", choices=("肝臓", "膵臓"),
                             chosen="(b) 膵臓"))
    add(db, first, make_turn("どの細胞？", "β細胞です。", thinking="ランゲルハンス島を思い出す。"))
    second = Conversation(language="en", dropped=1)
    add(db, second, make_turn("Metformin in CKD?", "Reduce the dose.",
                              stamp=replace(STAMP, endpoint="https://gpu:8000/v1")))
    listed = list_conversations(db)
    assert [(c["id"], c["n_turns"]) for c in listed] == [(second.id, 1), (first.id, 2)]  # the latest first
    assert listed[1]["title"] == ("インスリンを分泌する臓器はどれか。" * 10)[:80]
    assert listed[1]["model_file"] == "jmedllm-7b.Q4_K_M.gguf" and listed[1]["updated_at"]
    for conversation in (first, second):
        loaded = load_conversation(db, conversation.id)
        assert loaded == conversation  # turns with stamps, language, dropped, created_at


def test_a_regenerated_answer_replaces_the_stored_one(tmp_path: Path) -> None:
    db = tmp_path / "jmedllm.db"
    conversation = Conversation()
    add(db, conversation, make_turn("Q1", "A1"))
    add(db, conversation, make_turn("Q2", "A2"))
    conversation.turns.pop()
    add(db, conversation, make_turn("Q2", "A2 again"))
    assert [t.answer for t in load_conversation(db, conversation.id).turns] == ["A1", "A2 again"]


def test_history_switched_on_mid_conversation_saves_the_earlier_turns_too(tmp_path: Path) -> None:
    db = tmp_path / "jmedllm.db"
    conversation = Conversation(turns=[make_turn("Q1", "A1")])  # answered while history was off
    add(db, conversation, make_turn("Q2", "A2"))
    assert load_conversation(db, conversation.id).turns == conversation.turns


def test_missing_conversations_and_databases(tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    assert list_conversations(db) == [] and delete_all(db) == 0
    with pytest.raises(ConversationNotFound, match="No saved conversation 'abc'"):
        load_conversation(db, "abc")
    assert not db.exists()  # looking never creates the database
    add(db, Conversation(), make_turn("Q", "A"))
    for action in (load_conversation, delete_conversation):
        with pytest.raises(UserError, match="No saved conversation 'abc'"):
            action(db, "abc")


def test_delete_one_and_delete_all_leave_no_trace_in_the_file(tmp_path: Path) -> None:
    db = tmp_path / "jmedllm.db"
    kept, gone = Conversation(), Conversation()
    add(db, kept, make_turn("Q kept", "A kept"))
    add(db, gone, make_turn(f"{SECRET}は？", f"{SECRET}の評価", thinking=SECRET))
    assert SECRET.encode() in file_bytes(db)  # the test can see the text while it is stored
    delete_conversation(db, gone.id)
    assert [c["id"] for c in list_conversations(db)] == [kept.id]
    assert SECRET.encode() not in file_bytes(db)
    add(db, gone, make_turn(SECRET, SECRET))
    assert delete_all(db) == 2
    assert list_conversations(db) == []
    raw = file_bytes(db)
    assert SECRET.encode() not in raw and b"Q kept" not in raw
    with connect(db) as conn:  # the other tables and the schema are still there
        assert conn.execute("select count(*) from turns").fetchone()[0] == 0
        assert {"questions", "runs", "conversations", "turns"} <= set(conn.table_names())


def test_each_owner_sees_and_deletes_only_their_own_conversations(tmp_path: Path) -> None:
    """On a shared server, one login's conversations (patient text) are invisible to another's and to the
    local user's, even given their id; a turn saved under another's id is kept apart, never mixed in."""
    db = tmp_path / "ward.db"
    alice, bob, local = Conversation(), Conversation(), Conversation()
    alice.turns.append(make_turn(SECRET, "A"))
    save_turn(db, alice, alice.turns[0], owner="alice")
    bob.turns.append(make_turn("Q bob", "A bob"))
    save_turn(db, bob, bob.turns[0], owner="bob")
    add(db, local, make_turn("Q local", "A local"))
    assert [row["id"] for row in list_conversations(db, "bob")] == [bob.id]
    assert [row["id"] for row in list_conversations(db)] == [local.id]
    for owner in ("bob", None):
        for action in (load_conversation, delete_conversation, resolve_conversation_id):
            with pytest.raises(ConversationNotFound):
                action(db, alice.id, owner)
    taken = Conversation(id=alice.id, turns=[make_turn("Q", "A")])  # bob's page somehow holding alice's id
    save_turn(db, taken, taken.turns[0], owner="bob")
    assert taken.id != alice.id and load_conversation(db, alice.id, "alice").turns[0].question == SECRET
    assert delete_all(db, "bob") == 2 and delete_all(db) == 1
    assert [row["id"] for row in list_conversations(db, "alice")] == [alice.id]


def test_a_saved_conversation_is_found_by_the_start_of_its_id(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    for conversation_id in ("aa1" + "0" * 29, "aa2" + "0" * 29):
        add(db, Conversation(id=conversation_id), make_turn("Q", "A"))
    assert resolve_conversation_id(db, " AA1 ") == "aa1" + "0" * 29
    with pytest.raises(UserError, match="2 saved conversations have an id beginning with 'aa'"):
        resolve_conversation_id(db, "aa")
    for missing in ("ab", ""):
        with pytest.raises(ConversationNotFound):
            resolve_conversation_id(db, missing)


def test_markdown_export() -> None:
    conversation = Conversation(language="ja", created_at="2026-11-25T09:00:00+00:00", dropped=1)
    conversation.turns += [
        make_turn("インスリンを分泌する臓器はどれか。", "膵臓", choices=("肝臓", "膵臓"), chosen="(b) 膵臓"),
        make_turn("どの細胞？", "**β細胞**です。", thinking="ランゲルハンス島。\n\nβ細胞。"),
    ]
    text = export_markdown(conversation)
    assert text.startswith("# インスリンを分泌する臓器はどれか。\n")
    assert NOTICE in text.split("---")[0]  # the notice before the first turn
    assert "- date / 日付: 2026-11-25T09:00:00+00:00" in text and "oldest 1 turn(s) were left out" in text
    assert "## 1. 質問 / Question\n\nインスリンを分泌する臓器はどれか。\n\n- (a) 肝臓\n- (b) 膵臓\n" in text
    assert "**Chosen option / 選択肢:** (b) 膵臓" in text
    assert "> 思考過程 / reasoning\n>\n> ランゲルハンス島。\n>\n> β細胞。\n\n**β細胞**です。\n" in text
    assert text.count(f"Model / モデル: {STAMP.text()}") == 2
    assert "<details>" not in text
    assert "stopped before the end" not in text and "cut off" not in text  # both answers ended by themselves


def test_markdown_export_says_which_answers_were_stopped_or_cut_off() -> None:
    conversation = Conversation(turns=[
        make_turn("Q1", "Partial", stamp=replace(STAMP, finish_reason="cancelled")),
        make_turn("Q2", "Cut", stamp=replace(STAMP, finish_reason="length")),
    ])
    text = export_markdown(conversation)
    assert "Partial\n\n*(stopped before the end / 途中で停止しました)*\n" in text
    assert "Cut\n\n*(cut off at the length limit / 長さの上限で打ち切り)*\n" in text


def test_markdown_export_runs_nothing_a_model_or_model_file_wrote() -> None:
    # A Markdown viewer (many render HTML) opening the export must not run or load what the model wrote.
    hostile = '<img src=x onerror="alert(1)"> see ![x](http://evil/p.png) and <script>steal()</script>'
    conversation = Conversation(turns=[make_turn("<b>Q</b>", hostile, choices=("<i>a</i>", "b"), chosen="(a) <i>a</i>",
                                                 thinking="<iframe src=//x>",
                                                 stamp=replace(STAMP, file_name="<svg onload=x>.gguf"))])
    text = export_markdown(conversation)
    assert "<" not in text.replace("&lt;", "")  # not one live tag
    assert "&lt;img src=x" in text and "&lt;script&gt;" not in text  # shown as text, readable
    assert "(`http://evil/p.png`)" in text and "![" not in text  # the image is not loaded
    assert "&lt;svg onload=x>.gguf" in text


def test_an_older_database_gains_the_tables_and_keeps_its_rows(tmp_path: Path) -> None:
    db = Path(shutil.copy(FIXTURE, tmp_path / "jmedllm.db"))
    conversation = Conversation()
    add(db, conversation, make_turn("古いデータベースでの質問", "回答"))
    conn = sqlite3.connect(db)
    try:
        counts = [conn.execute(f"select count(*) from {t}").fetchone()[0] for t in ("questions", "runs", "answers")]
        indexes = {row[0] for row in conn.execute("select name from sqlite_master where tbl_name = 'turns'")}
    finally:
        conn.close()
    assert counts == [3, 2, 6]
    assert "idx_turns_conversation_id_position" in indexes
    assert load_conversation(db, conversation.id) == conversation


def test_a_conversation_continued_in_two_tabs_keeps_both_follow_ups(tmp_path: Path) -> None:
    db = tmp_path / "jmedllm.db"
    here = Conversation()
    add(db, here, make_turn("喘息発作の初期対応は？", "SABA吸入"))
    there = load_conversation(db, here.id)  # opened from the history in another tab
    add(db, here, make_turn("小児では？", "A2 here"))
    add(db, there, make_turn("妊婦では？", "A2 there"))
    assert there.id != here.id  # stored anew: the other tab's turn stays
    assert [t.question for t in load_conversation(db, here.id).turns] == ["喘息発作の初期対応は？", "小児では？"]
    add(db, there, make_turn("授乳中は？", "A3 there"))
    assert [t.answer for t in load_conversation(db, there.id).turns] == ["SABA吸入", "A2 there", "A3 there"]
    stale = load_conversation(db, here.id)
    stale.turns.pop()  # regenerating turn 1 in a tab that never saw turn 2
    add(db, here, make_turn("授乳中は？", "A3 here"))
    add(db, stale, make_turn("小児では？", "A2 again"))
    assert stale.id != here.id and len(load_conversation(db, here.id).turns) == 3
    assert len(list_conversations(db)) == 3
