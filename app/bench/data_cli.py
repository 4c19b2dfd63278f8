"""``jmedllm bench data``: import question sets for offline use (a folder, a file or GitHub's zip), list, remove."""

from __future__ import annotations

from pathlib import Path

import click

from app.cli import UserErrorGroup
from app.gguf_metadata import terminal_json, terminal_safe


def questions(n: int) -> str:
    """``n`` questions, in English: "1 question", "1,200 questions"."""
    return f"{n:,} question{'' if n == 1 else 's'}"


@click.group("data", cls=UserErrorGroup)
def data() -> None:
    """Question sets copied into the data folder: IgakuQA's zip from GitHub, other layouts, your own."""


@data.command("add")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Name to import it under (default: the set's own, e.g. igakuqa).")
@click.option("--replace", is_flag=True, help="Replace an imported set of the same name (once the new one is read).")
def add_cmd(path: Path, name: str | None, replace: bool) -> None:
    """Import a set: a folder, a file or a zip.

    PATH is a folder, a question file, or the zip GitHub serves for a repository (IgakuQA-main.zip,
    downloaded on another machine): checked, validated and copied into the data folder."""

    from app.bench.importing import add
    from app.copy_progress import copy_progress

    with copy_progress() as on_progress:
        added = add(path, name, on_progress, replace)
    for entry in added:
        click.echo(f"Imported {entry.name}: {terminal_safe(entry.label)}, {questions(entry.questions)} "
                   f"({', '.join(entry.languages)}), layout {entry.layout}, fingerprint {entry.fingerprint[:12]}.")
        click.echo(f"  Run it with: jmedllm bench run --data {entry.name}")


@data.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_cmd(as_json: bool) -> None:
    """List the imported question sets."""
    from app.bench.library import entries
    from app.terminal_columns import fit

    found = entries()
    if as_json:
        click.echo(terminal_json([e.as_dict() for e in found], indent=1))
        return
    if not found:
        click.echo("No imported question sets yet. Import one with: jmedllm bench data add PATH")
        return
    click.echo(f"{'name':<20} {'label':<24} {'layout':<12} {'lang':<6} {'questions':>9}  {'fingerprint':<12}  "
               f"{'added (UTC)':<25} source")
    for e in found:
        click.echo(f"{e.name:<20} {fit(terminal_safe(e.label), 24)} {e.layout:<12} {','.join(e.languages):<6} "
                   f"{e.questions:>9,}  {e.fingerprint[:12]:<12}  {e.added_at:<25} {terminal_safe(e.source)}")


@data.command("remove")
@click.argument("name")
def remove_cmd(name: str) -> None:
    """Delete an imported set (runs made with it stay in the database)."""
    from app.bench.importing import remove

    entry = remove(name)
    click.echo(f"Removed {entry.name} ({terminal_safe(entry.label)}, {questions(entry.questions)}).")
