"""``jmedllm doctor``: print the checks of :mod:`app.doctor` for people (or ``--json`` for scripts)."""

from __future__ import annotations

from pathlib import Path

import click

from app.doctor import FAIL, MARKS, WARN, DoctorOptions, Report, detail_lines, run_doctor
from app.engines.options import CONTEXT_RANGE, DEFAULT_CONTEXT
from app.gguf_metadata import printable, terminal_json


def human_text(report: Report) -> str:
    """One line per check with its mark, the verdict, then each check's details; control characters escaped."""
    lines = [f"{MARKS[check.status]} {check.title}: {check.summary}" for check in report.checks]
    failed = [check.name for check in report.checks if check.status == FAIL]
    warned = [check.name for check in report.checks if check.status == WARN]
    lines.append("")
    lines.append(f"Blocking problems (要対応): {', '.join(failed)}." if failed else "No blocking problem (問題なし).")
    if warned:
        lines.append(f"Warnings (注意): {', '.join(warned)}.")
    lines += ["", "Details:"]
    for check in report.checks:
        lines.append(f"{MARKS[check.status]} {check.name}")
        lines += [f"    {key}: {text}" for key, text in detail_lines(check.details)]
    return "\n".join(printable(line) for line in lines)


@click.command()
@click.option("--model", default=None, help='The GGUF to check memory for: a path, a file in the models folder, '
              'or "demo" (default: $JMEDLLM_MODEL or demo).')
@click.option("--ctx", "n_ctx", type=click.IntRange(*CONTEXT_RANGE), default=DEFAULT_CONTEXT, show_default=True,
              help="Context size in tokens, as given to serve.")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address serve will bind.")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQLite database (default: in the user data folder); opened read-only.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
@click.pass_context
def doctor(ctx: click.Context, model: str | None, n_ctx: int, host: str, port: int, db: Path | None,
           as_json: bool) -> None:
    """Check this machine for the app and explain what was found (exit status 1 on a blocking problem).

    Python, CPU, the llama.cpp build and GPUs, llama-server, memory for the model and context, the
    decode speed to expect, free disk, the database, IgakuQA, outbound settings and the port. Nothing
    is created, changed, built or downloaded.
    """
    report = run_doctor(DoctorOptions(model=model, n_ctx=n_ctx, host=host, port=port, db_path=db))
    if as_json:
        click.echo(terminal_json(report.as_dict(), indent=2))
    else:
        click.echo(human_text(report))
    if report.failed:
        ctx.exit(1)
