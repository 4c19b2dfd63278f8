"""The ``jmedllm`` command line: ask, model info, serve; bench and convert load on demand."""

from __future__ import annotations

import errno
import functools
import importlib
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from app import __version__
from app.engines.options import CONTEXT_RANGE, DEFAULT_CONTEXT, GPU_LAYERS_HELP
from app.errors import UserError
from app.model_cli import import_cmd

if TYPE_CHECKING:
    from app.engines.base import Engine
    from app.engines.factory import EngineSpec

F = TypeVar("F", bound=Callable[..., Any])


# The packages of the optional extras (pyproject.toml) -> the extra that installs them.
OPTIONAL_PACKAGES = {"torch": "convert", "transformers": "convert", "peft": "convert", "sentencepiece": "convert",
                     "safetensors": "convert", "trl": "train", "datasets": "train", "accelerate": "train"}


class UserErrorGroup(click.Group):
    """A click group that shows a :class:`UserError` as a clean error message (exit status 1), and a
    package of an extra that is not installed as the command that installs it."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:  # (click itself ends quietly when the reader of a pipe has left: EPIPE)
            if exc.errno != errno.ENOSPC:
                raise
            raise click.ClickException(f"Cannot write {exc.filename or 'the output'}: {exc.strerror}.") from exc
        except ModuleNotFoundError as exc:
            extra = OPTIONAL_PACKAGES.get((exc.name or "").partition(".")[0])
            if extra is None:
                raise
            raise click.ClickException(f"This command needs the '{extra}' extra ({exc.name} is not installed): "
                                       f"pip install -e '.[{extra}]' in the project's .venv") from exc


class LazyGroup(UserErrorGroup):
    """A click group whose heavy subcommand groups are imported only when used."""

    lazy = {"bench": "app.bench.cli:bench", "chat": "app.chat_cli:chat", "convert": "model_tools.cli:convert",
            "db": "app.db_cli:db", "doctor": "app.doctor_cli:doctor", "train": "model_tools.train.cli:train",
            "user": "app.users_cli:user"}

    def invoke(self, ctx: click.Context) -> object:
        # llama.cpp's libraries are loaded before a command imports pyarrow (sqlite-utils and Gradio import
        # pandas, which imports it). Seen on an H100 machine: with a CUDA build whose libraries each carry
        # their own copy of libstdc++, a model loaded after pyarrow crashed the process (SIGSEGV in
        # llama_model::print_info); loaded first, it ran.
        import llama_cpp  # noqa: F401

        return super().invoke(ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


ENGINE_SETTINGS = ("engine", "model", "gpu_layers", "n_ctx", "threads", "parallel", "engine_url",
                   "engine_key_file", "engine_model", "allow_plain_http", "engine_timeout")


def engine_options(func: F) -> F:
    """The options every command that answers questions shares; the command gets ``engine_spec``."""

    @functools.wraps(func)
    def with_spec(*args: Any, **kwargs: Any) -> Any:
        from app.engines.factory import EngineSpec, checked_spec

        given = {name: kwargs.pop(name) for name in ENGINE_SETTINGS}
        spec = EngineSpec(kind=given["engine"], model=given["model"], gpu_layers=given["gpu_layers"],
                          n_ctx=given["n_ctx"], threads=given["threads"], parallel=given["parallel"],
                          url=given["engine_url"], key_file=given["engine_key_file"],
                          served_model=given["engine_model"], allow_plain_http=given["allow_plain_http"],
                          timeout_s=given["engine_timeout"])
        return func(*args, engine_spec=checked_spec(spec), **kwargs)

    options = [
        click.option("--engine", type=click.Choice(["local", "llama-server", "openai"]), default="local",
                     show_default=True, help="local: this process, one answer at a time; llama-server: "
                     "llama.cpp's own server (built once from the pinned source), --parallel answers at once; "
                     "openai: an OpenAI-compatible endpoint (vLLM, llama-server, Ollama) at --engine-url."),
        click.option("--model", "model", default=None,
                     help='GGUF path, a file in the models folder, or "demo" (default; or $JMEDLLM_MODEL).'),
        click.option("--gpu-layers", default="auto", show_default=True, help=GPU_LAYERS_HELP),
        click.option("--ctx", "n_ctx", type=click.IntRange(*CONTEXT_RANGE), default=DEFAULT_CONTEXT,
                     show_default=True, help="Context size in tokens (per answer on llama-server)."),
        click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: all cores)."),
        click.option("--parallel", type=click.IntRange(1, 64), default=None,
                     help="Answers at once on llama-server or openai (default 4; the local engine: 1)."),
        click.option("--engine-url", default=None, help="openai: the endpoint's base URL, e.g. https://gpu:8000/v1."),
        click.option("--engine-key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="openai: a file (mode 600) holding the endpoint's API key."),
        click.option("--engine-model", default=None, help="openai: the served model id (default: the first listed)."),
        click.option("--allow-plain-http", is_flag=True,
                     help="openai: allow http:// to another machine (patient text unencrypted on the network)."),
        click.option("--engine-timeout", type=click.FloatRange(1, 3600), default=300.0, show_default=True,
                     help="openai: seconds to wait for the endpoint's next piece of an answer."),
    ]
    for option in reversed(options):
        with_spec = option(with_spec)
    return cast(F, with_spec)


def load_engine(spec: EngineSpec) -> Engine:
    """Open the engine ``spec`` names, telling the user what a first llama-server build is doing."""
    from app.engines.factory import open_engine

    return open_engine(spec, on_build_progress=lambda line: click.echo(line, err=True))


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
@engine_options
def ask(question: str, choices: tuple[str, ...], lang: str, template: str | None, shots: str,
        max_tokens: int, engine_spec: EngineSpec) -> None:
    """Ask QUESTION and stream the answer (a multiple-choice question when --choices are given)."""
    from app.gguf_metadata import printable
    from app.qa import Query, parse_choices, validate
    from app.qa import ask as ask_model

    item = Query(text=question, choices=parse_choices("\n".join(choices)), language=lang,
                 template=template, shots=int(shots), max_tokens=max_tokens)
    validate(item)  # a bad question fails now, not after the model has loaded
    # Ctrl-C stops the answer; pressed while the model loads (where llama.cpp's log callback would swallow
    # the KeyboardInterrupt), it stops before the answer begins.
    cancel = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: cancel.set())
    engine = load_engine(engine_spec)
    try:
        if cancel.is_set():
            click.echo("Stopped before the answer began. / 回答の開始前に停止しました。", err=True)
            sys.exit(130)
        answer = ask_model(engine, item, cancel)
        for piece in answer.generation:
            click.echo(piece, nl=False)
        click.echo()
    finally:
        engine.close()
    stats = answer.generation.stats
    if answer.choices:
        click.echo(f"\nChosen option: {answer.chosen_text() or 'none of the options (abstained)'}")
    card = engine.card
    source = f"{printable(card.endpoint)} · " if card.endpoint else ""
    click.echo(
        f"\n[{source}{printable(card.file_name)} · sha256 {card.short_hash} · {printable(card.quantization)} · "
        f"{engine.device} · "
        f"{stats.completion_tokens} tokens, {stats.tokens_per_second:.1f} tok/s · {stats.finish_reason}]",
        err=True,
    )
    if card.is_demo:
        click.echo("[demo model: not for clinical use]", err=True)
    click.echo("[Decision support only, not a diagnosis. / 診断ではなく意思決定支援です。]", err=True)
    if stats.finish_reason == "cancelled":
        sys.exit(130)


@main.group()
def model() -> None:
    """Inspect GGUF models and import them into the models folder."""


model.add_command(import_cmd)


@model.command("info")
@click.argument("path", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON.")
def model_info(path: str | None, as_json: bool) -> None:
    """Print the model card of PATH (a GGUF file, or "demo")."""
    from app.gguf_metadata import printable, terminal_json
    from app.model_card import read_model_card
    from app.models import resolve_model

    card = read_model_card(resolve_model(path))
    data = card.as_dict()
    if as_json:
        click.echo(terminal_json(data, indent=2))
        return
    for key, value in data.items():
        click.echo(f"{key:>16}: {printable(str(value))}")


@main.command()
@engine_options
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
@click.option("--api-key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keys for the OpenAI-compatible API at /v1 (one per line, mode 600; or $JMEDLLM_API_KEYS). "
                   "Required with a login (any non-loopback host).")
@click.option("--history/--no-history", default=False, show_default=True,
              help="Keep asked questions in the local SQLite database.")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQLite database (default: in the user data folder).")
def serve(engine_spec: EngineSpec, host: str, port: int, auth_file: Path | None, allowed_hosts: tuple[str, ...],
          session_hours: float, api_key_file: Path | None, history: bool, db: Path | None) -> None:
    """Start the web UI and the OpenAI-compatible API (/v1) on HOST:PORT with the given model loaded.

    Beyond loopback a login is required: users from --auth-file (or $JMEDLLM_AUTH, the same lines);
    failed logins are throttled and locked out per user and per address, sessions expire.
    """
    import logging

    from app.ports import listen_problem
    from app.ui.server import ServeOptions, checked_options
    from app.ui.server import serve as serve_ui

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options = checked_options(ServeOptions(
        host=host, port=port, auth_file=auth_file, history=history, db_path=db, gpu_layers=engine_spec.gpu_layers,
        n_ctx=engine_spec.n_ctx, threads=engine_spec.threads, allowed_hosts=allowed_hosts,
        session_hours=session_hours, api_key_file=api_key_file))
    if db is not None and not db.exists():
        click.echo(f"No database at {db} yet: it will be created there when the first question or "
                   "benchmark run is stored.", err=True)
    problem = listen_problem(host, port)  # before the model loads, which may take minutes
    if problem is not None:
        raise UserError(f"Cannot serve: {problem.message}")
    engine = load_engine(engine_spec)
    try:
        serve_ui(engine, options)
    finally:
        engine.close()


if __name__ == "__main__":
    sys.exit(main())
