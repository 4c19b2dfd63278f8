"""One table like the JMedLLM paper's: benchmark x language rows, one column per model.

- Rows: every (benchmark, language) the given runs answered (``runs.benchmark``, ``answers.language``),
  the paper's benchmarks first in its order, Japanese before English.
- Columns: models; runs of the same model file (sha256), engine, template, shots and mode share a
  column, so a model run once per benchmark fills one column. Two runs that would fill the same
  cell are refused.
- Cells: Gestalt accuracy (``gestalt_paper``, the paper's metric) with the letter metric beside it,
  and n answers; a cell from a run that did not complete is marked ``*`` with a footnote.
- Average: the macro mean over the rows a column fills (each benchmark x language row weighs the
  same whatever its n), so columns that fill different rows are not comparable on it.
- Chance: per row, the mean over its questions of 1/C(n_choices, k), k the number of gold letters
  (a uniform random pick of k choices); numeric-entry questions (no choices) count 0, and a question
  never scored (its prompt did not fit) is left out.
- Reference columns (optional): the paper's reported figures (:data:`app.bench.baselines.PAPER_REPORTED`),
  labelled as reported, not measured here; not averaged.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from math import comb
from typing import Any

import sqlite_utils

from app.bench.baselines import PAPER_REPORTED
from app.bench.export import neutralise_cell
from app.bench.metrics import PRIMARY, tally
from app.bench.overlap import overlap_line
from app.bench.store import get_run
from app.errors import UserError

SECONDARY = "letter"  # shown beside the primary metric
LANGUAGE_ORDER = ("ja", "en")
# The paper's benchmarks in the order of its tables, with their display names; other sets follow by name.
BENCHMARK_LABELS = {"igakuqa": "IgakuQA", "medqa": "MedQA", "medmcqa": "MedMCQA", "mmlu": "MMLU", "jmmlu": "JMMLU"}
REFERENCE_SOURCE = "Sukeda 2024, arXiv:2409.11783, Tables 2 and 4: Gestalt accuracy on the paper's full question sets"
REFERENCE_MISSING = ("The paper's figures for MedQA, MedMCQA and the MMLU/JMMLU medical subjects are left empty: "
                     "no readable copy of its Tables 2 and 4 was found to take them from.")
EMPTY = "-"


class TableError(UserError, ValueError):
    """The runs given cannot make one table (two of them fill the same cell)."""


@dataclass(frozen=True)
class Column:
    """A model: the runs that fill it, or (``reference``) a model the paper reported."""

    key: str
    label: str
    model_file: str = ""
    model_sha256: str = ""
    engine: str = ""
    template: str = ""
    shots: int = 0
    mode: str = ""
    run_ids: tuple[int, ...] = ()
    reference: bool = False


@dataclass(frozen=True)
class Cell:
    """One column's result on one row; accuracies are fractions (0-1), ``reported`` a percentage."""

    run_id: int | None = None
    gestalt: float | None = None
    letter: float | None = None
    n: int = 0
    complete: bool = True
    reported: float | None = None


@dataclass(frozen=True)
class Row:
    benchmark: str
    language: str
    chance: float | None
    cells: dict[str, Cell]  # column key -> cell; a column that does not fill the row has none

    @property
    def label(self) -> str:
        return BENCHMARK_LABELS.get(self.benchmark, self.benchmark)


@dataclass
class PaperTable:
    columns: list[Column]
    rows: list[Row]
    average: dict[str, tuple[float | None, float | None]]  # column key -> (gestalt, letter) macro means
    average_chance: float | None
    notes: list[str] = field(default_factory=list)

    def _cell_text(self, column: Column, cell: Cell | None) -> str:
        if cell is None:
            return EMPTY
        if column.reference:
            return _pct(cell.reported / 100 if cell.reported is not None else None)
        return f"{_pct(cell.gestalt)} ({_pct(cell.letter)}), n={cell.n}{'' if cell.complete else '*'}"

    def markdown(self) -> str:
        """The table in Markdown (also what ``bench table`` prints), notes below it."""
        header = ["Benchmark", "Language", "Chance", *(_md(c.label) for c in self.columns)]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * (len(header) - 2)]
        for row in self.rows:
            cells = [self._cell_text(c, row.cells.get(c.key)) for c in self.columns]
            lines.append("| " + " | ".join([_md(row.label), row.language, _pct(row.chance), *cells]) + " |")
        averages = [EMPTY if c.reference else f"{_pct(self.average[c.key][0])} ({_pct(self.average[c.key][1])})"
                    for c in self.columns]
        lines.append("| " + " | ".join(["Average", "macro", _pct(self.average_chance), *averages]) + " |")
        return "\n".join([*lines, "", *(f"- {note}" for note in self.notes)]) + "\n"

    def csv(self) -> str:
        """The same table as CSV: separate numeric columns (percentages), the notes after a blank line; text
        cells a spreadsheet would run as a formula (a model file named "=...") neutralised as exports are."""
        header = ["benchmark", "language", "chance_pct"]
        for c in self.columns:
            header += ([f"{c.label}: reported_pct"] if c.reference else
                       [f"{c.label}: {PRIMARY}_pct", f"{c.label}: {SECONDARY}_pct", f"{c.label}: n",
                        f"{c.label}: incomplete"])
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")

        def write(values: Sequence[Any]) -> None:
            writer.writerow([neutralise_cell(v) for v in values])

        write(header)
        for row in self.rows:
            values: list[Any] = [row.label, row.language, _num(row.chance)]
            for c in self.columns:
                cell = row.cells.get(c.key)
                if c.reference:
                    values.append("" if cell is None or cell.reported is None else cell.reported)
                elif cell is None:
                    values += ["", "", "", ""]
                else:
                    values += [_num(cell.gestalt), _num(cell.letter), cell.n, "" if cell.complete else "*"]
            write(values)
        average: list[Any] = ["Average", "macro", _num(self.average_chance)]
        for c in self.columns:
            average += [""] if c.reference else [_num(self.average[c.key][0]), _num(self.average[c.key][1]), "", ""]
        write(average)
        write([])
        for note in self.notes:
            write([note])
        return out.getvalue()

    def records(self) -> list[dict[str, Any]]:
        """One flat record per filled cell and per column's average (benchmark "average"), for a DataFrame."""
        out = []
        for c in self.columns:
            described = {"column": c.label, "reference": c.reference, "model_file": c.model_file,
                         "model_sha256": c.model_sha256, "engine": c.engine, "template": c.template,
                         "shots": c.shots, "mode": c.mode, "runs": ",".join(map(str, c.run_ids))}
            for row in self.rows:
                cell = row.cells.get(c.key)
                if cell is None:
                    continue
                out.append({"benchmark": row.benchmark, "benchmark_label": row.label, "language": row.language,
                            "chance": row.chance, **described, "run_id": cell.run_id,
                            PRIMARY: cell.reported / 100 if cell.reported is not None else cell.gestalt,
                            SECONDARY: cell.letter, "n": cell.n if not c.reference else None,
                            "complete": cell.complete})
            if not c.reference:
                gestalt, letter = self.average[c.key]
                out.append({"benchmark": "average", "benchmark_label": "Average", "language": "macro",
                            "chance": self.average_chance, **described, "run_id": None, PRIMARY: gestalt,
                            SECONDARY: letter, "n": None, "complete": None})
        return out


def _pct(value: float | None) -> str:
    return EMPTY if value is None else f"{value * 100:.1f}"


def _num(value: float | None) -> float | str:
    return "" if value is None else round(value * 100, 2)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _row_order(key: tuple[str, str]) -> tuple[int, str, int, str]:
    benchmark, language = key
    known = list(BENCHMARK_LABELS)
    lang_rank = LANGUAGE_ORDER.index(language) if language in LANGUAGE_ORDER else len(LANGUAGE_ORDER)
    return (known.index(benchmark) if benchmark in known else len(known), benchmark, lang_rank, language)


def chance_of(scores: str | None, gold: str | None) -> float | None:
    """1/C(n_choices, k) for one answer row (n_choices from its stored similarities); None when never scored."""
    if scores is None:
        return None
    n_choices = len(json.loads(scores))
    k = len([g for g in (gold or "").split(",") if g])
    if not n_choices or not k or k > n_choices:
        return 0.0
    return 1 / comb(n_choices, k)


def _column_key(run: dict) -> tuple[str, str, str, int, str]:
    """What makes two runs the same model in the table: model sha256, engine, template, shots, mode."""
    return (str(run["model_sha256"]), run.get("engine") or "local", str(run["template"]), int(run["shots"]),
            str(run["mode"]))


def _short(run: dict) -> tuple[str, str, int]:
    return (str(run["model_file"]), str(run["mode"]), int(run["shots"]))


def _columns(runs: Sequence[dict]) -> dict[tuple[str, str, str, int, str], Column]:
    """One column per model, in the order the runs were given; a header names the model file, mode
    and shots, and also the template, engine and short sha256 where two columns would read the same."""
    groups: dict[tuple[str, str, str, int, str], list[dict]] = {}
    for run in runs:
        groups.setdefault(_column_key(run), []).append(run)
    shown = [_short(group[0]) for group in groups.values()]
    columns = {}
    for i, (key, group) in enumerate(groups.items(), start=1):
        first = group[0]
        parts = [str(first["mode"]), f"{first['shots']}-shot"]
        if shown.count(_short(first)) > 1:
            parts += [key[2], key[1], key[0][:8]]
        columns[key] = Column(f"c{i}", f"{first['model_file']} ({', '.join(parts)})", str(first["model_file"]),
                              *key, run_ids=tuple(int(r["id"]) for r in group))
    return columns


def _legend(column: Column) -> str:
    runs = ", ".join(map(str, column.run_ids))
    return (f"{column.label}: run{'s' if len(column.run_ids) > 1 else ''} {runs}; model sha256 "
            f"{column.model_sha256[:12]}; engine {column.engine}; template {column.template}; mode {column.mode}; "
            f"{column.shots}-shot.")


def _answers(db: sqlite_utils.Database, run_id: int) -> list[dict]:
    cursor = db.execute(f"select problem_id, language, gold, scores, {PRIMARY}, {SECONDARY} from answers "
                        "where run_id = ? order by id", [run_id])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def _reference_columns(row_keys: Sequence[tuple[str, str]]) -> tuple[list[Column],
                                                                    dict[tuple[str, str], dict[str, Cell]]]:
    """A column per model the paper reported a figure for on one of the table's rows (its IgakuQA rows)."""
    columns: list[Column] = []
    cells: dict[tuple[str, str], dict[str, Cell]] = {}
    for model, figures in PAPER_REPORTED.items():
        column = Column(f"ref{len(columns) + 1}", f"{model} (reported)", model_file=model, reference=True)
        found = {("igakuqa", language): value for language, value in zip(LANGUAGE_ORDER, figures, strict=True)
                 if value is not None and ("igakuqa", language) in row_keys}
        if found:
            columns.append(column)
        for row_key, value in found.items():
            cells.setdefault(row_key, {})[column.key] = Cell(reported=value)
    return columns, cells


@dataclass
class _Filled:
    """What the runs put in the table: cells and per-question chances by row, and incomplete runs."""

    cells: dict[tuple[str, str], dict[str, Cell]] = field(default_factory=dict)
    chances: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    incomplete: list[str] = field(default_factory=list)


def _fill(db: sqlite_utils.Database, runs: Sequence[dict],
          columns: dict[tuple[str, str, str, int, str], Column]) -> _Filled:
    filled = _Filled()
    for run in runs:
        column = columns[_column_key(run)]
        complete = run["status"] == "complete"
        if not complete:
            filled.incomplete.append(f"* run {run['id']} incomplete ({run['status']}): "
                                     f"{run['n_answered']}/{run['n_items']} answered.")
        by_language: dict[str, list[dict]] = {}
        for answer in _answers(db, run["id"]):
            by_language.setdefault(answer["language"], []).append(answer)
        for language, rows in by_language.items():
            row_key = (run.get("benchmark") or "igakuqa", language)
            taken = filled.cells.setdefault(row_key, {}).get(column.key)
            if taken is not None:
                raise TableError(f"Runs {taken.run_id} and {run['id']} both fill the row "
                                 f"{BENCHMARK_LABELS.get(row_key[0], row_key[0])} {language} of the column "
                                 f"{column.label}: give only one of them")
            filled.cells[row_key][column.key] = Cell(run["id"], tally(rows, PRIMARY)["accuracy"],
                                                     tally(rows, SECONDARY)["accuracy"], len(rows), complete)
            for answer in rows:
                value = chance_of(answer["scores"], answer["gold"])
                if value is not None:
                    filled.chances.setdefault(row_key, {}).setdefault(answer["problem_id"], value)
    return filled


def paper_table(db: sqlite_utils.Database, run_ids: Sequence[int], reference: bool = False) -> PaperTable:
    """The paper-style table of ``run_ids`` (:class:`app.bench.store.RunNotFound` for an unknown id,
    :class:`TableError` when two runs would fill the same cell)."""
    runs = [get_run(db, run_id) for run_id in dict.fromkeys(run_ids)]
    by_key = _columns(runs)
    columns = list(by_key.values())
    filled = _fill(db, runs, by_key)
    row_keys = sorted(filled.cells, key=_row_order)
    notes = [
        f"Cells: Gestalt accuracy in % ({PRIMARY}, the paper's metric), the letter metric in parentheses, "
        "n = answers.",
        "Average: macro mean over the benchmark x language rows each column fills (every row weighs the same, "
        "whatever its n); columns that fill different rows are not comparable on it.",
        "Chance: per row, the mean over its questions of 1/C(n_choices, k), k = the number of gold letters "
        "(a uniform random pick); numeric-entry questions count 0, questions never scored are left out.",
        *(_legend(c) for c in columns),
        *filled.incomplete,
        *(f"Run {run['id']} ({run['model_file']}): {line}" for run in runs if (line := overlap_line(run))),
    ]
    shown = columns
    if reference:
        ref_columns, ref_cells = _reference_columns(row_keys)
        shown = [*columns, *ref_columns]
        for row_key, reported in ref_cells.items():
            filled.cells[row_key].update(reported)
        notes += [f"Columns marked (reported): reported in the paper, not measured here ({REFERENCE_SOURCE}); "
                  "zero-shot CoT unless the column says otherwise; not averaged." if ref_columns else
                  "No reported figure of the paper is for these rows (only its IgakuQA figures are recorded here).",
                  REFERENCE_MISSING]
    rows = [Row(k[0], k[1], _mean(list(filled.chances.get(k, {}).values())), filled.cells[k]) for k in row_keys]
    average = {}
    for c in columns:
        own = [r.cells[c.key] for r in rows if c.key in r.cells]
        average[c.key] = (_mean([x.gestalt for x in own if x.gestalt is not None]),
                          _mean([x.letter for x in own if x.letter is not None]))
    return PaperTable(shown, rows, average, _mean([r.chance for r in rows if r.chance is not None]), notes)
