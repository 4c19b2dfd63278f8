"""``jmedllm chat``: a conversation with the model in the terminal, follow-ups keeping the context."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from app.chat import NOTICE, Conversation, Reply, answer, fit
from app.cli import engine_options, load_engine
from app.conversations import list_conversations, load_conversation, resolve_conversation_id, save_turn
from app.db import check_writable, default_db_path
from app.db_in_use import in_use
from app.engines.base import Engine
from app.errors import UserError
from app.gguf_metadata import printable, terminal_safe

if TYPE_CHECKING:
    from app.engines.factory import EngineSpec

NEW = "/new"
QUIT = "/quit"
REASONING_LABEL = "[思考過程 / reasoning] "
HELP = (f"Type a question and press Enter. {NEW}: new conversation; {QUIT} or Ctrl-D: leave; "
        "Ctrl-C: stop an answer. / 質問を入力して Enter。")
CUT_OFF = ("[cut off at the length limit: raise --max-tokens (now {n}) "
           "/ 長さの上限で打ち切り：--max-tokens を増やしてください]")


@click.command()
@click.option("--lang", type=click.Choice(["auto", "ja", "en"]), default="auto", show_default=True,
              help="Answer language (auto: from the conversation's first question).")
@click.option("--max-tokens", type=click.IntRange(1, 8192), default=512, show_default=True,
              help="The longest answer, in tokens.")
@click.option("--thinking/--no-thinking", default=None,
              help="Reasoning on or off, for models whose chat template switches it (default: the template's).")
@click.option("--history/--no-history", default=False, show_default=True,
              help="Keep the conversation in the local SQLite database.")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQLite database for --history, --list and --resume (default: in the user data folder).")
@click.option("--list", "list_saved", is_flag=True, help="List the saved conversations, newest first, and leave.")
@click.option("--resume", metavar="ID", help="Go on with a saved conversation (its id from --list, or the start "
              "of it); its new turns are saved too.")
@engine_options
def chat(lang: str, max_tokens: int, thinking: bool | None, history: bool, db: Path | None, list_saved: bool,
         resume: str | None, engine_spec: EngineSpec) -> None:
    """Talk with the model: each question follows up on the conversation so far."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 (line editing for input() at a terminal)
    if list_saved:
        show_saved(db or default_db_path())
        return
    db_path = (db or default_db_path()) if history or resume else None
    if db_path is not None:
        check_writable(db_path)  # a bad --db fails now, not after the model has loaded
    try:
        conversation = load_conversation(db_path, resolve_conversation_id(db_path, resume)) \
            if db_path is not None and resume else Conversation()
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    engine = load_engine(engine_spec)
    try:
        click.echo(f"[{NOTICE}]", err=True)
        if engine.card.is_demo:
            click.echo("[demo model: not for clinical use / デモモデル（臨床使用不可）]", err=True)
        if db_path is not None:
            click.echo(f"[history on: conversations are saved in {db_path}]", err=True)
        click.echo(HELP, err=True)
        if conversation.turns:
            show_earlier(conversation)
        session = ChatSession(engine, lang, max_tokens, thinking, db_path, conversation)
        with contextlib.suppress(EOFError, KeyboardInterrupt), \
                in_use(db_path) if db_path is not None else contextlib.nullcontext():
            while session.step(input("> ")):
                pass
        click.echo()
    finally:
        engine.close()


class ChatSession:
    """One terminal conversation: reads a line, answers it, keeps (and optionally saves) the turns."""

    def __init__(self, engine: Engine, lang: str, max_tokens: int, thinking: bool | None,
                 db_path: Path | None, conversation: Conversation | None = None) -> None:
        self.engine = engine
        self.lang = lang
        self.max_tokens = max_tokens
        self.thinking = thinking
        self.db_path = db_path
        self.conversation = conversation or Conversation()

    def step(self, line: str) -> bool:
        """Handle one input line; False when the user leaves."""
        text = line.strip()
        if text == QUIT:
            return False
        if text == NEW:
            self.new_conversation()
        elif text:
            try:
                self.ask(text)
            except UserError as exc:  # the conversation goes on
                click.echo(f"Error: {exc}", err=True)
        return True

    def new_conversation(self) -> None:
        self.conversation = Conversation()
        click.echo("[new conversation / 新しい会話]", err=True)

    def ask(self, question: str) -> None:
        """Answer ``question`` as the next turn, asking first what to do if it would overflow the context."""
        needed = fit(self.engine, self.conversation, question, self.max_tokens, self.thinking, self.lang)
        drop = 0
        if not needed.fits:
            if needed.drop is None:
                click.echo(f"This question, with room for a {self.max_tokens}-token answer, does not fit the "
                           f"model's context window ({needed.n_ctx} tokens). Shorten it or lower --max-tokens. "
                           "/ 質問が長すぎます。", err=True)
                return
            click.echo(f"The conversation is too long for the model's context window ({needed.prompt_tokens} + "
                       f"{self.max_tokens} > {needed.n_ctx} tokens). / 会話が文脈長を超えます。", err=True)
            if confirm(f"Leave out the oldest {needed.drop} turn(s)? Otherwise a new conversation starts. "
                       "/ 古い発言を除外しますか？ [y/N] "):
                drop = needed.drop
                click.echo(f"[the oldest {self.conversation.dropped + drop} turn(s) are left out of the context "
                           "/ 古い発言を文脈から除外]", err=True)
            else:
                self.new_conversation()
        cancel = threading.Event()
        with stop_on_interrupt(cancel):
            reply = answer(self.engine, self.conversation, question, cancel, self.max_tokens, self.thinking,
                           drop, self.lang)
            show(reply)
        turn = reply.finish()
        if turn.stamp.finish_reason == "cancelled":
            click.echo("[stopped / 停止しました]", err=True)
        elif turn.stamp.finish_reason == "length":
            click.echo(CUT_OFF.format(n=self.max_tokens), err=True)
        click.echo(f"[{turn.stamp.text()}]", err=True)
        if self.db_path is not None:
            save_turn(self.db_path, self.conversation, turn)


def show_saved(db_path: Path) -> None:
    """The saved conversations, newest first: id (enough of it for --resume), date, turns, model, first question."""
    from app.terminal_columns import fit as columns_fit

    try:
        saved = list_conversations(db_path)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    if not saved:
        click.echo(f"No saved conversations in {db_path}. Keep one with: jmedllm chat --history")
        return
    click.echo(f"{'id':<12}  {'updated (UTC)':<16}  {'turns':>5}  {'model':<32}  first question")
    for row in saved:
        click.echo(f"{row['id'][:12]}  {row['updated_at'][:16].replace('T', ' '):<16}  {row['n_turns']:>5}  "
                   f"{columns_fit(printable(row['model_file'] or ''), 32)}  "
                   f"{columns_fit(printable(' '.join(row['title'].split())), 48).rstrip()}")


def show_earlier(conversation: Conversation) -> None:
    """The resumed conversation's turns so far, as they were asked and answered."""
    click.echo(f"[resumed: {len(conversation.turns)} earlier turn(s) / 会話を再開]", err=True)
    for turn in conversation.turns:
        click.echo(f"> {terminal_safe(turn.user_text())}")
        click.echo(terminal_safe(turn.answer))
        click.echo(f"[{turn.stamp.text()}]", err=True)


def show(reply: Reply) -> None:
    """Stream the reply: reasoning dimmed after its label, then the answer."""
    shown_thinking = shown_answer = ""
    for _ in reply:
        thinking, answer_text = reply.visible()
        if thinking != shown_thinking:
            if not shown_thinking:
                click.echo(click.style(REASONING_LABEL, dim=True), nl=False)
            click.echo(click.style(terminal_safe(thinking[len(shown_thinking):]), dim=True), nl=False)
            shown_thinking = thinking
        if answer_text != shown_answer:
            if shown_thinking and not shown_answer:
                click.echo("\n")
            click.echo(terminal_safe(answer_text[len(shown_answer):]), nl=False)
            shown_answer = answer_text
    click.echo()


def confirm(question: str) -> bool:
    """A yes/no question on the terminal; anything but y or yes (EOF included) is no."""
    try:
        return input(question).strip().lower() in ("y", "yes", "はい")
    except EOFError:
        return False


@contextlib.contextmanager
def stop_on_interrupt(cancel: threading.Event) -> Iterator[None]:
    """Within the block Ctrl-C sets ``cancel`` (stops the answer) instead of leaving."""
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
