"""``jmedllm chat``: the terminal conversation, its session logic on the scripted engine, then the real
command in subprocesses with the demo model (two turns, /new, history, Ctrl-C)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from click.testing import CliRunner

from app.chat_cli import ChatSession
from app.conversations import list_conversations, load_conversation
from app.demo_model import DEMO_SHA256
from app.engines.base import NotSupported
from tests.conftest import JMEDLLM, REPO_ROOT
from tests.scripted_engine import ScriptedEngine

# `jmedllm chat` once app/cli.py names it; until then the same command added to `jmedllm` in the subprocess
CHAT = [*JMEDLLM, "chat"]
DEMO = ["--model", "demo", "--ctx", "1024", "--gpu-layers", "0"]
STAMP_MARK = f"sha256 {DEMO_SHA256[:12]}"


def session_output(session: ChatSession, lines: Sequence[str], typed: str = "") -> tuple[str, str]:
    """Feed ``lines`` to the session (``typed``: what later questions on the terminal read); stdout, stderr."""
    with CliRunner().isolation(input=typed) as (out, err, _both):
        for line in lines:
            assert session.step(line)
    return out.getvalue().decode(), err.getvalue().decode()


def test_reasoning_is_labelled_apart_and_escape_sequences_are_shown_not_run() -> None:
    engine = ScriptedEngine(lambda _p: "<think>腎機能を考える</think>\n\n減量します。\x1b[2J")
    session = ChatSession(engine, "auto", 64, None, None)
    out, err = session_output(session, ["eGFR 25 では？"])
    assert out == "[思考過程 / reasoning] 腎機能を考える\n\n減量します。\\x1b[2J\n"
    assert "scripted.gguf · sha256 5c5c5c5c5c5c" in err and "· stop" in err
    assert session.conversation.turns[0].thinking == "腎機能を考える"


def test_an_answer_cut_at_max_tokens_says_so_and_a_finished_one_does_not() -> None:
    session = ChatSession(ScriptedEngine(lambda p: "ok" if "Short?" in p else "a" * 40), "en", 10, None, None)
    _out, err = session_output(session, ["A long answer?"])
    assert "· length" in err and "cut off at the length limit: raise --max-tokens (now 10)" in err
    _out, err = session_output(session, ["Short?"])
    assert "· stop" in err and "cut off" not in err


def test_an_overflowing_conversation_asks_before_dropping_turns() -> None:
    engine = ScriptedEngine(lambda _p: "a" * 40, n_ctx=500)
    session = ChatSession(engine, "en", 60, None, None)
    session_output(session, ["first question?", "second question?"])
    kept_id = session.conversation.id
    out, err = session_output(session, ["third question?"], typed="y\n")
    assert "too long for the model's context window" in err and "Leave out the oldest 1 turn(s)?" in out
    assert "the oldest 1 turn(s) are left out" in err
    assert (session.conversation.id, session.conversation.dropped, len(session.conversation.turns)) == (kept_id, 1, 3)
    assert "first question?" not in engine.prompts[-1]
    _out, err = session_output(session, ["fourth question?"], typed="\n")  # Enter: no, a new conversation
    assert "[new conversation" in err
    assert session.conversation.id != kept_id and len(session.conversation.turns) == 1


def test_a_question_too_long_alone_and_engine_errors_leave_the_session_going() -> None:
    session = ChatSession(ScriptedEngine(lambda _p: "ok", n_ctx=300), "en", 64, None, None)
    _out, err = session_output(session, ["long " * 100])
    assert "does not fit the model's context window (300 tokens)" in err and session.conversation.turns == []

    class Refusing(ScriptedEngine):
        def render_chat(self, messages: Sequence[dict[str, str]], cancel: threading.Event | None = None,
                        thinking: bool | None = None) -> tuple[str, tuple[str, ...]]:
            raise NotSupported("The endpoint refused.")

    session = ChatSession(Refusing(lambda _p: "ok"), "en", 64, None, None)
    _out, err = session_output(session, ["Q?", "/new"])
    assert "Error: The endpoint refused." in err and "[new conversation" in err
    assert not session.step("/quit")


def test_a_line_that_is_not_utf8_is_refused_and_the_session_goes_on(demo_model_path: Path) -> None:
    typed = b"\xff\xfe\xe8\x83\xb8\n/quit\n"  # invalid bytes, then a valid 胸 after them
    result = subprocess.run([*CHAT, *DEMO], input=typed, capture_output=True, timeout=600, cwd=REPO_ROOT)
    err = result.stderr.decode()
    assert result.returncode == 0 and "not valid UTF-8" in err and "Traceback" not in err


def run_chat(*args: str, lines: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CHAT, *DEMO, *args], input="".join(f"{line}\n" for line in lines), capture_output=True,
                          text=True, timeout=600, cwd=REPO_ROOT)


def test_two_questions_then_end_of_input(demo_model_path: Path, tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    result = run_chat("--max-tokens", "16", "--no-thinking", "--db", str(db),
                      lines=["インフルエンザの主な症状は？", "小児ではどうですか？"])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    prompts = result.stdout.split("> ")
    assert len(prompts) == 4 and prompts[0] == "" and prompts[3].strip() == ""  # two answers, then the prompt at EOF
    assert prompts[1].strip() and prompts[2].strip()
    assert result.stderr.count(STAMP_MARK) == 2 and "Q4_K_M" in result.stderr
    assert result.stderr.count("not a diagnosis") == 1 and result.stderr.count("demo model: not for clinical") == 1
    assert not db.exists()  # history is off unless asked for


def test_history_keeps_each_conversation_and_new_starts_another(demo_model_path: Path, tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    result = run_chat("--max-tokens", "8", "--history", "--db", str(db),
                      lines=["高血圧の第一選択薬は？", "高齢者では？", "/new", "What is sepsis?", "/quit"])
    assert result.returncode == 0, result.stderr
    assert "[new conversation" in result.stderr and f"saved in {db}" in result.stderr
    saved = list_conversations(db)
    assert [(c["title"], c["n_turns"]) for c in saved] == [("What is sepsis?", 1), ("高血圧の第一選択薬は？", 2)]
    earlier = load_conversation(db, saved[1]["id"])
    assert earlier.language == "ja"
    assert [t.question for t in earlier.turns] == ["高血圧の第一選択薬は？", "高齢者では？"]
    assert all(t.stamp.sha256 == DEMO_SHA256 and t.stamp.completion_tokens > 0 for t in earlier.turns)


def test_list_then_resume_a_saved_conversation(demo_model_path: Path, tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    first = run_chat("--max-tokens", "8", "--history", "--db", str(db), lines=["高血圧の第一選択薬は？", "/quit"])
    assert first.returncode == 0, first.stderr
    (saved,) = list_conversations(db)
    listed = subprocess.run([*CHAT, "--list", "--db", str(db)], capture_output=True, text=True, timeout=120,
                            cwd=REPO_ROOT)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split()[:2] == ["id", "updated"]
    assert row.startswith(saved["id"][:12]) and "高血圧の第一選択薬は？" in row and "qwen2.5" in row.lower()
    resumed = run_chat("--max-tokens", "8", "--resume", saved["id"][:6], "--db", str(db), lines=["高齢者では？"])
    assert resumed.returncode == 0, resumed.stderr
    assert "[resumed: 1 earlier turn(s)" in resumed.stderr
    assert resumed.stdout.startswith("> 高血圧の第一選択薬は？\n")  # the earlier turn is shown first
    again = load_conversation(db, saved["id"])
    assert [t.question for t in again.turns] == ["高血圧の第一選択薬は？", "高齢者では？"]  # saved, same conversation
    assert len(list_conversations(db)) == 1


def test_resume_refuses_an_unknown_or_ambiguous_id_before_loading_the_model(tmp_path: Path) -> None:
    empty = tmp_path / "none.db"
    unknown = subprocess.run([*CHAT, *DEMO, "--resume", "abc", "--db", str(empty)], capture_output=True,
                             text=True, timeout=120, cwd=REPO_ROOT)
    assert unknown.returncode == 1 and "No saved conversation 'abc'" in unknown.stderr
    assert "llama" not in unknown.stderr.lower()  # refused before the model loaded
    listed = subprocess.run([*CHAT, "--list", "--db", str(empty)], capture_output=True, text=True, timeout=120,
                            cwd=REPO_ROOT)
    assert listed.returncode == 0 and "No saved conversations" in listed.stdout


class Running:
    """``jmedllm chat`` in a subprocess, its output collected as it comes."""

    def __init__(self, args: Sequence[str]) -> None:
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, cwd=REPO_ROOT, env=os.environ.copy())
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, into in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=self._collect, args=(stream, into), daemon=True).start()

    @staticmethod
    def _collect(stream: IO[str], into: list[str]) -> None:
        while piece := stream.read(1):
            into.append(piece)

    def stdout(self) -> str:
        return "".join(self.out)

    def stderr(self) -> str:
        return "".join(self.err)

    def wait_for(self, check: Callable[[], bool], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert self.process.poll() is None, self.stderr()
            assert time.monotonic() < deadline, (self.stdout(), self.stderr())
            time.sleep(0.02)

    def type(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()


def test_ctrl_c_stops_an_answer_and_at_the_prompt_leaves(demo_model_path: Path) -> None:
    chat = Running([*CHAT, *DEMO, "--max-tokens", "300", "--lang", "ja"])
    try:
        chat.type("1から100までの数字を、一行に一つずつ書いてください。")
        chat.wait_for(lambda: len(chat.stdout()) > len("> ") + 3)  # the answer is streaming
        chat.process.send_signal(signal.SIGINT)
        chat.wait_for(lambda: "[stopped" in chat.stderr())
        chat.wait_for(lambda: chat.stdout().endswith("> "))  # the conversation goes on
        assert "cancelled" in chat.stderr()
        chat.type("続けてください。")
        chat.wait_for(lambda: chat.stderr().count(STAMP_MARK) == 2 and chat.stdout().endswith("> "), timeout=600)
        chat.process.send_signal(signal.SIGINT)
        assert chat.process.wait(timeout=60) == 0
    finally:
        if chat.process.poll() is None:
            chat.process.kill()
    assert "Traceback" not in chat.stderr()
