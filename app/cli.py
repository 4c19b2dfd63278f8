"""The ``jmedllm`` command line: ask, model info, serve; bench and convert load on demand."""

from __future__ import annotations

import importlib
import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from app import __version__
from app.engines.options import DEFAULT_CONTEXT, GPU_LAYERS_HELP, parse_gpu_layers
from app.errors import UserError

if TYPE_CHECKING:
    from app.engines.base import Engine

F = TypeVar("F", bound=Callable[..., Any])


class UserErrorGroup(click.Group):
    """A click group that shows a :class:`UserError` as a clean error message (exit status 1)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise click.ClickException(str(exc)) from exc


class LazyGroup(UserErrorGroup):
    """A click group whose heavy subcommand groups are imported only when used."""

    lazy = {"bench": "app.bench.cli:bench", "convert": "model_tools.cli:convert", "user": "app.users_cli:user"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


def model_options(func: F) -> F:
    """The options every command that loads a model shares."""
    func = click.option("--threads", type=int, default=None, help="CPU threads (default: all cores).")(func)
    func = click.option("--ctx", "n_ctx", type=click.IntRange(256, 131072), default=DEFAULT_CONTEXT,
                        show_default=True, help="Context size in tokens.")(func)
    func = click.option("--gpu-layers", default="auto", show_default=True, help=GPU_LAYERS_HELP)(func)
    func = click.option("--model", "model", default=None,
                        help='GGUF path, a file in the models folder, or "demo" (default; or $JMEDLLM_MODEL).')(func)
    return func


def load_engine(model: str | None, gpu_layers: str, n_ctx: int, threads: int | None) -> Engine:
    """Resolve and load a model (the ``local`` engine)."""
    from app.engines.local import LocalEngine
    from app.models import resolve_model

    path = resolve_model(model)
    return LocalEngine.load(path, n_gpu_layers=parse_gpu_layers(gpu_layers), n_ctx=n_ctx, n_threads=threads)


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="jmedllm")
def main() -> None:
    """JMedLLM Desk: a local Japanese/English medical LLM workstation (decision support only)."""


@main.command()
@click.argument("question")
@click.option("--choices", "-c", multiple=True,
              help="A choice (repeat for each), or several separated by newlines.")
@click.option("--lang", type=click.Choice(["auto", "ja", "en"]), default="auto", show_default=True)
@click.option("--template", default=None, help="Paper template for multiple-choice questions.")
@click.option("--shots", type=click.Choice(["0", "1", "3"]), default="0", show_default=True)
@click.option("--max-tokens", type=click.IntRange(1, 8192), default=512, show_default=True)
@model_options
def ask(question: str, choices: tuple[str, ...], lang: str, template: str | None, shots: str,
        max_tokens: int, model: str | None, gpu_layers: str, n_ctx: int, threads: int | None) -> None:
    """Ask QUESTION and stream the answer (a multiple-choice question when --choices are given)."""
    from app.gguf_metadata import printable
    from app.qa import Query, parse_choices, validate
    from app.qa import ask as ask_model

    item = Query(text=question, choices=parse_choices("\n".join(choices)), language=lang,
                 template=template, shots=int(shots), max_tokens=max_tokens)
    validate(item)  # a bad question fails now, not after the model has loaded
    engine = load_engine(model, gpu_layers, n_ctx, threads)
    cancel = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: cancel.set())
    answer = ask_model(engine, item, cancel)
    for piece in answer.generation:
        click.echo(piece, nl=False)
    click.echo()
    stats = answer.generation.stats
    if answer.choices:
        click.echo(f"\nChosen option: {answer.chosen_text() or 'none of the options (abstained)'}")
    card = engine.card
    click.echo(
        f"\n[{printable(card.file_name)} · sha256 {card.short_hash} · {printable(card.quantization)} · "
        f"{engine.device} · "
        f"{stats.completion_tokens} tokens, {stats.tokens_per_second:.1f} tok/s · {stats.finish_reason}]",
        err=True,
    )
    if card.is_demo:
        click.echo("[demo model: not for clinical use]", err=True)
    click.echo("[Decision support only, not a diagnosis. / 診断ではなく意思決定支援です。]", err=True)


@main.group()
def model() -> None:
    """Inspect GGUF models."""


@model.command("info")
@click.argument("path", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON.")
def model_info(path: str | None, as_json: bool) -> None:
    """Print the model card of PATH (a GGUF file, or "demo")."""
    from app.gguf_metadata import printable, printable_json
    from app.model_card import read_model_card
    from app.models import resolve_model

    card = read_model_card(resolve_model(path))
    data = card.as_dict()
    if as_json:
        click.echo(printable_json(json.dumps(data, ensure_ascii=False, indent=2)))
        return
    for key, value in data.items():
        click.echo(f"{key:>16}: {printable(str(value))}")


@main.command()
@model_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but localhost needs --auth-file or $JMEDLLM_AUTH.")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option("--auth-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Users file written by `jmedllm user add` (mode 600; default: users.txt in the data "
                   "folder when it exists, or $JMEDLLM_AUTH).")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="A host name clients use (LAN name, reverse proxy); repeatable. Other Host headers get 400.")
@click.option("--session-hours", type=click.FloatRange(min=0, min_open=True), default=12.0, show_default=True,
              help="A login session lasts this long.")
@click.option("--history/--no-history", default=False, show_default=True,
              help="Keep asked questions in the local SQLite database.")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQLite database (default: in the user data folder).")
def serve(model: str | None, gpu_layers: str, n_ctx: int, threads: int | None, host: str, port: int,
          auth_file: Path | None, allowed_hosts: tuple[str, ...], session_hours: float, history: bool,
          db: Path | None) -> None:
    """Start the web UI on HOST:PORT with the given model loaded.

    Beyond loopback a login is required: users from --auth-file (or $JMEDLLM_AUTH, the same lines);
    failed logins are throttled and locked out per user and per address, sessions expire.
    """
    import logging

    from app.ui.server import ServeOptions, checked_options
    from app.ui.server import serve as serve_ui

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options = checked_options(ServeOptions(
        host=host, port=port, auth_file=auth_file, history=history, db_path=db, gpu_layers=gpu_layers,
        n_ctx=n_ctx, threads=threads, allowed_hosts=allowed_hosts, session_hours=session_hours))
    if db is not None and not db.exists():
        click.echo(f"No database at {db} yet: it will be created there when the first question or "
                   "benchmark run is stored.", err=True)
    engine = load_engine(model, gpu_layers, n_ctx, threads)
    serve_ui(engine, options)


if __name__ == "__main__":
    sys.exit(main())
