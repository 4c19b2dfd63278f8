"""``jmedllm bench table RUN...``: the runs in one table like the paper's (app.bench.table).

Attached to the ``bench`` group by :mod:`app.bench.cli`.
"""

from __future__ import annotations

from pathlib import Path

import click

from app.bench.cli_options import DB_OPTION, open_for_reading
from app.gguf_metadata import terminal_safe


@click.command("table")
@click.argument("run_ids", metavar="RUN [RUN...]", type=int, nargs=-1, required=True)
@click.option("--reference", is_flag=True,
              help="Add the JMedLLM paper's reported figures as reference columns (reported, not measured here).")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "csv"]), default="text", show_default=True,
              help="text: the Markdown table, for the terminal; csv: separate numeric columns.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (atomically, mode 600; default: standard output).")
@DB_OPTION
def table(run_ids: tuple[int, ...], reference: bool, fmt: str, output: Path | None, db_path: Path | None) -> None:
    """RUNs side by side like the paper's tables: benchmark x language rows, a column per model,
    Gestalt accuracy with the letter metric beside it, chance floors and a macro average."""
    from app.bench.export import open_export
    from app.bench.table import paper_table

    result = paper_table(open_for_reading(db_path), run_ids, reference)
    text = result.csv() if fmt == "csv" else result.markdown()
    if output is None:
        click.echo(terminal_safe(text), nl=False)
        return
    with open_export(output) as handle:
        handle.write(text)
    click.echo(f"Wrote the table of runs {', '.join(map(str, dict.fromkeys(run_ids)))} to {output}.", err=True)
