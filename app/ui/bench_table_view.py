"""The Benchmark tab's paper-style table: chosen runs side by side, as in the JMedLLM paper's tables.

Rows are benchmark x language, columns the runs (models); :func:`app.bench.table.paper_table`
makes the table, with the paper's reported figures as an optional reference labelled as reported.
Cells are shown as plain text; CSV and Markdown downloads go to this server's private export folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from app.bench import store
from app.bench.export import open_export, private_export_dir
from app.bench.metrics import PRIMARY
from app.bench.table import SECONDARY, PaperTable, paper_table
from app.db import open_db
from app.errors import UserError
from app.ui.bench_data_panel import plain
from app.ui.i18n import t
from app.ui.labels import Labeler
from app.ui.state import AppState

FORMATS = {"csv": "csv", "markdown": "md"}  # format -> file suffix


def run_choices(db_path: Path) -> list[tuple[str, int]]:
    """Every run, newest first, as "#id · model · benchmark · language · mode · set"."""
    if not Path(db_path).exists():
        return []
    db = open_db(db_path)
    try:
        return [(f"#{r['id']} · {r['model_file']} · {r.get('benchmark') or 'igakuqa'} · {r['language']} · "
                 f"{r['mode']} · {r['question_set']}", int(r["id"])) for r in store.list_runs(db)]
    finally:
        db.close()


def make_table(db_path: Path, run_ids: Sequence[int], reference: bool) -> PaperTable:
    """The paper-style table of ``run_ids`` (with the paper's reported figures when ``reference``)."""
    db = open_db(db_path)
    try:
        return paper_table(db, [int(run_id) for run_id in run_ids], reference)
    finally:
        db.close()


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}"


def _cell(record: dict[str, Any]) -> str:
    """A cell as the paper prints it: Gestalt % (letter %), n; a reported figure alone; * = incomplete run."""
    if record["reference"]:
        return _percent(record[PRIMARY])
    n = f", n={record['n']}" if record["n"] is not None else ""
    return f"{_percent(record[PRIMARY])} ({_percent(record[SECONDARY])}){n}{'*' if record['complete'] is False else ''}"


def table_frame(table: PaperTable) -> pd.DataFrame:
    """One row per benchmark x language and the average, one text column per model (cells shown as text)."""
    keys = [(row.label, row.language) for row in table.rows] + [("Average", "macro")]
    rows: dict[tuple[str, str], dict[str, Any]] = {key: {"benchmark": key[0], "language": key[1]} for key in keys}
    for record in table.records():
        row = rows[(record["benchmark_label"], record["language"])]
        row["chance %"] = _percent(record["chance"])
        row[record["column"]] = _cell(record)
    columns = ["benchmark", "language", "chance %", *dict.fromkeys(c.label for c in table.columns)]
    return pd.DataFrame(list(rows.values()), columns=columns).fillna("-")


def notes_markdown(table: PaperTable) -> str:
    """The table's notes (what the cells mean, which runs fill each column), as escaped plain text."""
    return "\n".join(f"- {plain(note)}" for note in table.notes)


def write_table(table: PaperTable, run_ids: Sequence[int], reference: bool, fmt: str) -> Path:
    """``table`` as ``fmt`` ("csv" or "markdown") in the private export folder, one file per choice of runs."""
    key = hashlib.sha256(repr((sorted(int(i) for i in run_ids), reference)).encode()).hexdigest()[:12]
    path = private_export_dir() / f"paper-table-{key}.{FORMATS[fmt]}"
    with open_export(path) as handle:
        handle.write(table.csv() if fmt == "csv" else table.markdown())
    return path


class TableView:
    """The runs picker, the reference switch, the table and its downloads."""

    def __init__(self, state: AppState, labeler: Labeler, ui_lang: gr.State, lang: str) -> None:
        self.state = state
        with labeler.add(gr.Accordion(t("bench_table_title", lang), open=False, elem_id="bench-table-view"),
                         "bench_table_title"):
            with gr.Row():
                self.runs = labeler.add(gr.Dropdown(run_choices(state.options.database), value=[], multiselect=True,
                                                    label=t("bench_table_runs", lang), elem_id="bench-table-runs"),
                                        "bench_table_runs")
                self.reference = labeler.add(gr.Checkbox(False, label=t("bench_table_reference", lang),
                                                         elem_id="bench-table-reference"), "bench_table_reference")
                show = labeler.add(gr.Button(t("bench_table_show", lang), variant="primary",
                                             elem_id="bench-table-show"), "bench_table_show", "value")
            self.message = gr.Markdown(elem_id="bench-table-status")
            self.table = labeler.add(gr.Dataframe(pd.DataFrame(), label=t("bench_table", lang), interactive=False,
                                                  wrap=True, elem_id="bench-paper-table"), "bench_table")
            with gr.Row():
                csv_button = labeler.add(gr.Button(t("bench_table_csv", lang), elem_id="bench-table-csv"),
                                         "bench_table_csv", "value")
                markdown_button = labeler.add(gr.Button(t("bench_table_markdown", lang),
                                                        elem_id="bench-table-markdown"), "bench_table_markdown",
                                              "value")
            download = gr.File(label="paper table", interactive=False, elem_id="bench-table-file")

        def build(run_ids: list[int] | None, reference: bool, ui_lang: str) -> tuple[str, PaperTable | None]:
            if not run_ids:
                return t("bench_table_none", ui_lang), None
            try:
                return "", make_table(state.options.database, run_ids, bool(reference))
            except UserError as exc:
                return t("bench_table_failed", ui_lang).format(error=plain(str(exc))), None

        def show_table(run_ids: list[int] | None, reference: bool, ui_lang: str) -> tuple[str, Any]:
            message, table = build(run_ids, reference, ui_lang)
            if table is None:
                return message, pd.DataFrame()
            return notes_markdown(table), table_frame(table)

        def export(fmt: str) -> Any:
            def handler(run_ids: list[int] | None, reference: bool, ui_lang: str) -> tuple[str, str | None]:
                message, table = build(run_ids, reference, ui_lang)
                if table is None:
                    return message, None
                return message, str(write_table(table, run_ids or [], bool(reference), fmt))

            return handler

        inputs = [self.runs, self.reference, ui_lang]
        show.click(show_table, inputs=inputs, outputs=[self.message, self.table], api_name="bench_paper_table")
        csv_button.click(export("csv"), inputs=inputs, outputs=[self.message, download],
                         api_name="bench_paper_table_csv")
        markdown_button.click(export("markdown"), inputs=inputs, outputs=[self.message, download],
                              api_name="bench_paper_table_markdown")

        gr.on(None, self.choices_update, inputs=None, outputs=self.runs, queue=False, show_progress="hidden",
              api_visibility="private")  # on page load: the runs made since the server started

    def choices_update(self) -> Any:
        """The picker's choices after new runs (the chosen ones kept)."""
        return gr.update(choices=run_choices(self.state.options.database))
