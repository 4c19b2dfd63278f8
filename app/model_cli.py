"""``jmedllm model import``: copy a GGUF into the models folder, checked and hashed, with a progress bar."""

from __future__ import annotations

import shlex
from pathlib import Path

import click


@click.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--name", default=None,
              help="File name in the models folder (default: FILE's own; .gguf is added when missing).")
@click.option("--replace", is_flag=True, help="Replace a model of the same name in the models folder.")
def import_cmd(file: Path, name: str | None, replace: bool) -> None:
    """Copy the GGUF FILE into the models folder.

    FILE is checked first (GGUF header and metadata, an architecture llama.cpp runs, free disk space)
    and copied to a temporary file that takes its name only when complete; its sha256 is recorded."""

    from app.copy_progress import copy_progress
    from app.gguf_metadata import printable
    from app.model_card import read_model_card
    from app.model_import import import_model

    with copy_progress() as on_progress:
        imported = import_model(file, name, replace, on_progress)
    card = read_model_card(imported.path)  # the sha256 is cached: the file is not read again
    verb = "Replaced" if imported.replaced else "Imported"
    click.echo(f"{verb} {imported.path.name} in {imported.path.parent}")
    click.echo(f"  sha256: {imported.sha256}")
    click.echo(f"  {printable(card.name)} ({printable(card.architecture)}, {printable(card.quantization)}, "
               f"{card.file_size / 2**30:.2f} GiB)")
    click.echo(f"  license: {printable(card.license or 'not stated in the file')}")
    if card.usage_warning:
        click.echo(f"  WARNING, the model's own notice: {printable(card.usage_warning)}")
    click.echo(f"  Use it with: jmedllm serve --model {shlex.quote(imported.path.name)}  (or pick it in the Model tab)")
