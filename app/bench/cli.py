"""``jmedllm bench``: run, list, show, compare, export and score IgakuQA benchmark runs."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from app.bench.cli_options import DATA_OPTION, DB_OPTION, database_path, open_for_reading
from app.bench.data_cli import data
from app.bench.metrics import PRIMARY, metric_choices
from app.bench.modes import DEFAULT_MODE, MODES, mode_help
from app.bench.table_cli import table
from app.cli import UserErrorGroup, engine_options, load_engine
from app.gguf_metadata import terminal_json, terminal_safe

if TYPE_CHECKING:
    from app.bench.data import Dataset
    from app.engines.factory import EngineSpec
    from app.prompts import Language

@click.group(cls=UserErrorGroup)
def bench() -> None:
    """Self-benchmark: IgakuQA (Japanese national medical licensing exam) and imported question sets."""


@bench.command("run")
@engine_options
@click.option("--lang", type=click.Choice(["ja", "en", "both"]), default="ja", show_default=True)
@click.option("--set", "set_name", type=click.Choice(["paper", "paper-strict", "text-only", "full", "quick"]),
              default="paper", show_default=True, help="Question set.")
@click.option("--year", default=None, help="Only this year (2018-2022) or exam (112-116).")
@click.option("--block", default=None, help="Only these blocks, e.g. B or BE.")
@click.option("--quick-size", type=click.IntRange(1, 1455), default=20, show_default=True,
              help="Questions in the quick set.")
@click.option("--mode", type=click.Choice(list(MODES)), default=DEFAULT_MODE, show_default=True, help=mode_help())
@click.option("--template", default=None, help="Template family (medpalm_five_choice_cot, alpaca) or name.")
@click.option("--shots", type=click.Choice(["0", "1", "3"]), default="0", show_default=True)
@click.option("--limit", type=click.IntRange(1, None), default=None, help="Only the first N questions.")
@DB_OPTION
@DATA_OPTION
@click.option("--progress/--no-progress", default=True, show_default=True)
def run_cmd(engine_spec: EngineSpec, lang: str, set_name: str,
            year: str | None, block: str | None, quick_size: int, mode: str, template: str | None, shots: str,
            limit: int | None, db_path: Path | None, data: str | None, progress: bool) -> None:
    """Run (or resume) the benchmark; answers are stored one by one, Ctrl-C keeps it resumable."""
    from tqdm import tqdm

    from app.bench.report import format_summary, percent, summarize
    from app.bench.runner import RunConfig, checked_plan, run_benchmark
    from app.bench.sets import SetSpec, parse_year
    from app.bench.sources import load_dataset
    from app.bench.store import answers, get_run
    from app.db import check_writable, database_errors
    from app.db_in_use import in_use
    from app.engines.base import NotSupported

    spec = SetSpec(set_name, parse_year(year), block.upper() if block else None, quick_size)
    languages = ("ja", "en") if lang == "both" else (lang,)
    config = RunConfig(spec, languages, mode, template, int(shots), limit, data)
    if engine_spec.kind != "local" and MODES[mode].requires:
        raise NotSupported(f"The {mode} mode runs on the local engine only (--engine local): "
                           f"it needs {MODES[mode].requires}, which the {engine_spec.kind} engine does not offer.")
    database = database_path(db_path)
    # Everything that can fail fast is checked before the model loads: data, set and template (before a
    # new database is created for them), then the database.
    dataset = load_dataset(data)
    checked_plan(dataset, config)
    if not database.exists():
        click.echo(f"Creating a new database at {database}.", err=True)
    check_writable(database)
    cancel = threading.Event()
    stopped_by: list[int] = []

    def on_stop(signum: int, _frame: object) -> None:
        """Ctrl-C, or SIGTERM (``systemctl stop``, ``kill``): stop after the current question, resumable."""
        if cancel.is_set():
            raise KeyboardInterrupt
        stopped_by.append(signum)
        cancel.set()
        click.echo("\nStopping after the current question (Ctrl-C again to stop now)...", err=True)

    for signum in (signal.SIGINT, signal.SIGTERM):  # set before loading: llama.cpp's log callback eats a Ctrl-C
        signal.signal(signum, on_stop)
    engine = load_engine(engine_spec)
    if stopped_by:
        engine.close()
        click.echo("Stopped before the run began; no run was started.", err=True)
        sys.exit(128 + stopped_by[0])
    bar = None
    last = None
    try:
        with database_errors(database), in_use(database):  # locked or read-only mid-run: a clear message
            for event in run_benchmark(engine, database, config, cancel, dataset):
                last = event
                if bar is None:
                    if event.resumed:
                        click.echo(f"Resuming run {event.run_id}: {event.resumed} of {event.total} already answered.",
                                   err=True)
                    else:
                        click.echo(f"Run {event.run_id}: {event.total} answers to produce.", err=True)
                    bar = tqdm(total=event.total, initial=event.done, disable=not progress, unit="q",
                               file=sys.stderr, dynamic_ncols=True)
                    continue
                bar.n = event.done
                if event.accuracy is not None:
                    bar.set_postfix(acc=percent(event.accuracy))
                bar.refresh()
    finally:
        if bar is not None:
            bar.close()
        engine.close()
    if last is None:
        return
    db = open_for_reading(database)
    run = get_run(db, last.run_id)
    click.echo(terminal_safe(format_summary(run, summarize(answers(db, last.run_id), dataset))))
    if run["status"] != "complete":
        click.echo(f"\nRun {run['id']} is {run['status']}; run the same command again to resume it.", err=True)
        sys.exit(128 + stopped_by[0] if stopped_by else 1)


@bench.command("list")
@DB_OPTION
@click.option("--json", "as_json", is_flag=True)
def list_cmd(db_path: Path | None, as_json: bool) -> None:
    """List the stored runs, newest first."""
    from app.bench.report import percent, primary_accuracy
    from app.bench.store import list_runs
    from app.terminal_columns import fit

    runs = list_runs(open_for_reading(db_path))
    if as_json:
        click.echo(terminal_json(runs, indent=1))
        return
    if not runs:
        click.echo("No benchmark runs yet. Start one with: jmedllm bench run --set quick")
        return
    click.echo(f"{'id':>4}  {'started (UTC)':<25} {'status':<11} {'model':<36} {'mode':<8} {'lang':<4} "
               f"{'benchmark':<12} {'set':<18} {'done':>9}  {PRIMARY}")
    for r in runs:
        click.echo(f"{r['id']:>4}  {r['started_at']:<25} {r['status']:<11} "
                   f"{fit(terminal_safe(str(r['model_file'])), 36)} {r['mode']:<8} {r['language']:<4} "
                   f"{fit(terminal_safe(str(r['benchmark'])), 12)} {r['question_set']:<18} "
                   f"{str(r['n_answered']) + '/' + str(r['n_items']):>9}  {percent(primary_accuracy(r))}")


@bench.command("show")
@click.argument("run_id", type=int)
@DB_OPTION
@DATA_OPTION
@click.option("--json", "as_json", is_flag=True)
@click.option("--baselines/--no-baselines", default=True, show_default=True)
def show_cmd(run_id: int, db_path: Path | None, data: str | None, as_json: bool, baselines: bool) -> None:
    """Summarize RUN: accuracy per metric, language, year, block; safety; pass/fail; baselines."""
    from app.bench.baselines import baselines_for, paper_reported
    from app.bench.report import format_summary, percent, summarize
    from app.bench.sources import load_dataset
    from app.bench.store import answers, get_run

    db = open_for_reading(db_path)
    run = get_run(db, run_id)
    rows = answers(db, run_id)
    dataset = load_dataset(data) if data else run_dataset(run)
    summary = summarize(rows, dataset)
    if baselines and dataset is not None and dataset.layout == "igakuqa":  # IgakuQA's predictions, the paper's figures
        summary["baselines"] = baselines_for(dataset, [r["problem_id"] for r in rows])
        summary["paper_reported"] = paper_reported()
    if as_json:
        click.echo(terminal_json({"run": run, "summary": summary}, indent=1))
        return
    click.echo(terminal_safe(format_summary(run, summary)))
    if "baselines" in summary and rows:
        click.echo("\nBaselines on the same questions (IgakuQA's published predictions, letter match):")
        for b in summary["baselines"]:
            click.echo(f"  {b['name']:<32} {b['correct']:>4}/{b['total']:<4} {percent(b['accuracy'])}")
        click.echo("Reported in the JMedLLM paper (Gestalt, its full question set; reference only):")
        for p in summary["paper_reported"]:
            fmt = lambda v: f"{v:.1f}%" if v is not None else "-"  # noqa: E731
            click.echo(f"  {p['model']:<32} ja {fmt(p['igakuqa_ja'])}  en {fmt(p['igakuqa_en'])}")


def run_dataset(run: dict) -> Dataset | None:
    """The question set ``run`` was asked from; None, with a note, where it can no longer be read
    (removed with ``bench data remove``, moved), so that the stored answers are still shown."""
    from app.bench.data import DataError
    from app.bench.sources import load_dataset

    try:
        return load_dataset(run.get("data_dir"))
    except DataError as exc:
        click.echo(f"Note: the question set of run {run['id']} cannot be read: "
                   f"{terminal_safe(str(exc).splitlines()[0])}\n"
                   "Its stored answers are shown without the chance floor, pass/fail and baselines "
                   "(--data NAME|PATH names the set to read them with).", err=True)
        return None


@bench.command("compare")
@click.argument("run_a", type=int)
@click.argument("run_b", type=int)
@DB_OPTION
@click.option("--metric", type=click.Choice(metric_choices()), default=PRIMARY, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def compare_cmd(run_a: int, run_b: int, db_path: Path | None, metric: str, as_json: bool) -> None:
    """Per-question differences between two runs and an exact McNemar test on the accuracy difference."""
    from app.bench.compare import compare_answers
    from app.bench.report import percent
    from app.bench.store import answers, get_run

    db = open_for_reading(db_path)
    get_run(db, run_a)
    get_run(db, run_b)
    result = compare_answers(answers(db, run_a), answers(db, run_b), metric)
    if as_json:
        click.echo(terminal_json(result, indent=1))
        return
    for d in result["differences"]:
        mark = lambda ok: "✓" if ok else "✗"  # noqa: E731
        click.echo(f"  {terminal_safe(d['problem_id']):<8} [{d['language']}] gold {d['gold']:<6} "
                   f"A {d['picked_a'] or '-':<6}{mark(d['correct_a'])}  "
                   f"B {d['picked_b'] or '-':<6}{mark(d['correct_b'])}")
    if result["paired"]:
        click.echo(
            f"\n{metric}: A {percent(result['accuracy_a'])} vs B {percent(result['accuracy_b'])} on "
            f"{result['paired']} paired answers (B - A = {result['difference'] * 100:+.1f} points); "
            f"only A right {result['only_a_correct']}, only B right {result['only_b_correct']}; "
            f"exact McNemar p = {result['mcnemar_exact_p']:.4g}")
        click.echo(f"Raw outputs differ on {result['different_outputs']} of {result['paired']} paired answers.")
    else:
        click.echo("The two runs share no answered questions.")
    if result["only_in_a"] or result["only_in_b"]:
        click.echo(f"Unpaired: {result['only_in_a']} only in A, {result['only_in_b']} only in B.")


@bench.command("export")
@click.argument("run_id", type=int)
@DB_OPTION
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (atomically, mode 600; default: standard output).")
def export_cmd(run_id: int, db_path: Path | None, fmt: str, output: Path | None) -> None:
    """Write RUN's answers as CSV or JSON lines (each with the run's model and settings)."""
    from app.bench.export import open_export, write_export
    from app.bench.store import get_run

    db = open_for_reading(db_path)
    run = get_run(db, run_id)
    if output is None:
        write_export(db, run, fmt, sys.stdout)
        return
    with open_export(output) as handle:
        write_export(db, run, fmt, handle)


@bench.command("score")
@click.option("--predictions", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help='JSON lines: {"problem_id", "prediction": "a,c"}, {"problem_id", "response": "the model\'s '
                   'continuation"} or the harness\'s {"problem_id", "full_response": "prompt + continuation"}.')
@click.option("--lang", type=click.Choice(["ja", "en"]), default="ja", show_default=True)
@DATA_OPTION
@click.option("--json", "as_json", is_flag=True)
def score_cmd(predictions: Path, lang: Language, data: str | None, as_json: bool) -> None:
    """Score an external predictions file with every applicable metric."""
    from app.bench.external import score_file
    from app.bench.sources import load_dataset

    result = score_file(predictions, load_dataset(data), lang)
    if as_json:
        click.echo(json.dumps(result))
        return
    for metric, t in result.items():
        click.echo(f"{metric:<14} {t['correct']}/{t['total']} = {t['accuracy'] * 100:.2f}%")


bench.add_command(data)
bench.add_command(table)
