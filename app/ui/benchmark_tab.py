"""The Benchmark tab: one button runs the self-benchmark on the loaded model.

IgakuQA or an imported question set (the chooser, and the import when there is no data:
:mod:`app.ui.bench_data_panel`); IgakuQA's quick check, paper's set or a full year, another set's
quick check or all of it; Japanese and/or English; generate or log-likelihood mode. Live progress
(running accuracy, time left, also on other pages of the server: :mod:`app.ui.bench_live`), Stop
(enabled while this page's run runs; the run stays resumable: pressing the button again with the
same settings continues it), the results, plots against the baselines (IgakuQA), the history of
runs, pass/fail per year with its parts, CSV export, and the paper-style table of chosen runs
(:mod:`app.ui.bench_table_view`).

The button's API name is ``self_benchmark`` with inputs (set_name, languages, mode, limit, data);
``data`` (the set's name, default ``igakuqa``) came last, so callers that pass four still run IgakuQA.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from app.bench import store
from app.bench.baselines import BASELINE_FILES, baseline_breakdown, baselines_for, paper_reported
from app.bench.data import EXAMS, YEARS, Dataset
from app.bench.export import open_export, private_export_dir, write_export
from app.bench.library import NAME_PATTERN
from app.bench.metrics import METRICS, PRIMARY
from app.bench.modes import DEFAULT_MODE, MODES
from app.bench.report import primary_accuracy, summarize
from app.bench.runner import RunConfig, run_benchmark
from app.bench.sets import QUICK_SIZE, SetError, SetSpec
from app.bench.sources import DEFAULT_SET
from app.db import open_db
from app.errors import UserError
from app.ui.bench_data_panel import IGAKUQA_SET_CHOICES, LANG_CHOICES, DataPanel, DatasetCache, paper_size
from app.ui.bench_live import WATCH_S, LiveRun, done_text
from app.ui.bench_table_view import TableView
from app.ui.cancels import CancelRegistry
from app.ui.events import QUIET
from app.ui.i18n import t
from app.ui.labels import Labeler
from app.ui.refused import Refused
from app.ui.state import AppState

MODE_CHOICES = [(f"{m.label_en} / {m.label_ja}", m.name) for m in MODES.values() if m.in_ui]
PRIMARY_COLUMN = f"{PRIMARY} %"


def spec_for(set_name: str, dataset: Dataset) -> SetSpec:
    """The set chosen in the tab; a quick check of a set with fewer questions than QUICK_SIZE is labelled with
    the number it asks ("quick5"), not "quick20"."""
    if set_name == "quick":
        return SetSpec("quick", quick_size=max(1, min(QUICK_SIZE, paper_size(dataset))))
    if set_name == "paper":
        return SetSpec("paper")
    if set_name.isdigit() and int(set_name) in YEARS:
        return SetSpec("full", year=YEARS[int(set_name)])
    if set_name.isdigit() and int(set_name) in EXAMS:
        return SetSpec("full", year=int(set_name))
    raise SetError(f"Unknown question set {set_name!r}")


def _languages(languages: list[str] | str | None) -> tuple[str, ...]:
    if isinstance(languages, str):
        languages = ["ja", "en"] if languages == "both" else [languages]
    chosen = tuple(x for x in ("ja", "en") if x in (languages or []))
    return chosen or ("ja",)


def results_frame(summary: dict[str, Any], ui_lang: str = "en") -> pd.DataFrame:
    rows = []
    for lang, totals in summary.get("by_language", {}).items():
        for metric, tally_ in totals.items():
            rows.append({"language": lang, "metric": METRICS[metric].label(ui_lang), "correct": tally_["correct"],
                         "total": tally_["total"], "accuracy %": round((tally_["accuracy"] or 0) * 100, 1)})
    floor = summary.get("chance_floor_gestalt_paper")
    if floor and floor["total"]:
        rows.append({"language": "all", "metric": "Chance floor of Gestalt (empty answer)", "correct": floor["correct"],
                     "total": floor["total"], "accuracy %": round(floor["accuracy"] * 100, 1)})
    if summary.get("answers"):
        rows.append({"language": "all", "metric": "Abstentions", "correct": summary["abstained"],
                     "total": summary["answers"], "accuracy %": None})
        rows.append({"language": "all", "metric": "Contraindicated (禁忌) picks", "correct":
                     summary["contraindicated_questions"], "total": summary["answers"], "accuracy %": None})
    for b in summary.get("baselines", []):
        rows.append({"language": b["language"], "metric": f"Baseline: {b['name']} (letter)", "correct": b["correct"],
                     "total": b["total"], "accuracy %": round((b["accuracy"] or 0) * 100, 1)})
    return pd.DataFrame(rows, columns=["language", "metric", "correct", "total", "accuracy %"])


def pass_fail_frame(summary: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for o in summary.get("pass_fail", []):
        rows.append({
            "language": o["language"], "year": o["year"],
            "estimate": "image questions counted wrong" if o["estimate"] == "images_wrong" else "text-only projection",
            "result": "PASS" if o["passed"] else "FAIL",
            "required (B+E)": f"{o['required_points']:.4g}/{o['required_total']} (≥{o['required_line']})",
            "general+clinical": f"{o['general_points']:.4g}/{o['general_total']} (≥{o['general_line']})",
            "kinki": f"{o['kinki_questions']:.3g} (≤{o['kinki_max']})",
            "answered": f"{o['answered']}/{o['questions']}" + ("" if o["complete"] else " incomplete"),
        })
    return pd.DataFrame(rows, columns=["language", "year", "estimate", "result", "required (B+E)",
                                       "general+clinical", "kinki", "answered"])


def comparison_frame(rows: list[dict], dataset: Dataset, key: str,
                     baselines: tuple[str, ...] = ("gpt4", "chatgpt", "gpt3", "student-majority")) -> pd.DataFrame:
    """Model accuracy (the primary metric) and each baseline's (letter) per ``key`` on the same questions.

    Gradio's BarPlot stacks bars that share an x value, so each bar gets its own x label
    ("2018 · GPT-4") and the colour says who it is.
    """
    out = []
    column = "exam" if key == "year" else "category"
    groups: dict[Any, list[int]] = {}
    for r in rows:
        groups.setdefault(r[column], []).append(int(r[PRIMARY]))
    label = (lambda v: str(EXAMS.get(v, v))) if key == "year" else str
    results: dict[str, dict[str, float]] = {}
    for value, hits in groups.items():
        results.setdefault(label(value), {})["this model"] = round(sum(hits) / len(hits), 4)
    ids = [r["problem_id"] for r in rows]
    for name in baselines:
        for value, acc in baseline_breakdown(dataset, name, ids, column).items():
            results.setdefault(label(value), {})[BASELINE_FILES[name]] = acc
    for value in sorted(results):
        for who, acc in results[value].items():
            out.append({key: value, "bar": f"{value} · {who}", "who": who, "accuracy": acc})
    return pd.DataFrame(out, columns=[key, "bar", "who", "accuracy"])


def runs_frame(db_path: Path) -> pd.DataFrame:
    cols = ["id", "started_at", "status", "model_file", "benchmark", "mode", "language", "question_set", "answered",
            PRIMARY_COLUMN]
    if not Path(db_path).exists():
        return pd.DataFrame(columns=cols)
    db = open_db(db_path)
    try:
        out = []
        for r in store.list_runs(db):
            acc = primary_accuracy(r)
            out.append({"id": r["id"], "started_at": r["started_at"], "status": r["status"],
                        "model_file": r["model_file"], "benchmark": r.get("benchmark") or DEFAULT_SET,
                        "mode": r["mode"], "language": r["language"],
                        "question_set": r["question_set"], "answered": f"{r['n_answered']}/{r['n_items']}",
                        PRIMARY_COLUMN: round(acc * 100, 1) if acc is not None else None})
        return pd.DataFrame(out, columns=cols)
    finally:
        db.close()


def history_frame(runs: pd.DataFrame) -> pd.DataFrame:
    done = runs.dropna(subset=[PRIMARY_COLUMN]) if len(runs) else runs
    if not len(done):
        return pd.DataFrame(columns=["run", "accuracy", "series"])
    return pd.DataFrame({"run": done["id"].astype(int), "accuracy": done[PRIMARY_COLUMN].astype(float),
                         "series": done["mode"] + " · " + done["language"]}).sort_values("run")


def export_name(run: dict) -> str:
    """The CSV file name of a run's export: its benchmark and id ("igakuqa-run-3.csv")."""
    benchmark = str(run.get("benchmark") or DEFAULT_SET)
    return f"{benchmark if NAME_PATTERN.match(benchmark) else 'benchmark'}-run-{int(run['id'])}.csv"


def controls(running: bool) -> tuple[Any, Any]:
    """The Run and Stop buttons: Run enabled and Stop disabled (grey) while idle, the other way round while running."""
    return (gr.update(interactive=not running),
            gr.update(interactive=running, variant="stop" if running else "secondary"))


def build_benchmark_tab(state: AppState, labeler: Labeler, ui_lang: gr.State, lang: str, page: gr.Blocks) -> None:
    """Create the Benchmark tab's components inside the current ``gr.Tab`` of ``page``."""
    cancels = CancelRegistry()
    datasets = DatasetCache()  # by set name; an import clears it, a set imported again is read again
    live = LiveRun()  # this server's run in progress, shown read-only on its other pages

    def text(key: str) -> str:
        return t(f"bench_{key}", lang)

    def follow(component: Any, key: str, attr: str = "label") -> Any:
        """Register ``component`` so the UI language toggle relabels it."""
        return labeler.add(component, f"bench_{key}", attr)

    follow(gr.Markdown(text("intro")), "intro", "value")
    panel = DataPanel(state, labeler, lang, datasets)
    with gr.Row():
        set_name = follow(gr.Dropdown(IGAKUQA_SET_CHOICES, value="quick", label=text("set"), elem_id="bench-set"),
                          "set")
        languages = follow(gr.CheckboxGroup(LANG_CHOICES, value=["ja"], label=text("languages"),
                                            elem_id="bench-langs"), "languages")
        mode = follow(gr.Radio(MODE_CHOICES, value=DEFAULT_MODE, label=text("mode"), elem_id="bench-mode"), "mode")
        limit = follow(gr.Number(value=0, precision=0, minimum=0, label=text("limit"), elem_id="bench-limit"),
                       "limit")
    with gr.Row():
        run_button = follow(gr.Button(text("run"), variant="primary", elem_id="bench-run"), "run", "value")
        stop_button = follow(gr.Button(text("stop"), variant="secondary", interactive=False, elem_id="bench-stop"),
                             "stop", "value")
    panel.connect(set_name, languages, run_button, ui_lang)
    status = gr.Markdown(elem_id="bench-status")
    watch_timer = gr.Timer(WATCH_S, active=False)  # on a page that did not start the run in progress
    results = follow(gr.Dataframe(results_frame({}), label=text("results"), interactive=False,
                                  elem_id="bench-results"), "results")
    pass_fail = follow(gr.Dataframe(pass_fail_frame({}), label=text("pass_fail"), interactive=False,
                                    elem_id="bench-passfail"), "pass_fail")
    with gr.Row():
        year_plot = follow(gr.BarPlot(x="bar", y="accuracy", color="who", label=text("by_year"), y_lim=[0, 1],
                                      x_label_angle=-45, sort=None, x_title="year · who"), "by_year")
        category_plot = follow(gr.BarPlot(x="bar", y="accuracy", color="who", label=text("by_category"),
                                          y_lim=[0, 1], x_label_angle=-60, sort=None, x_title="category · who"),
                               "by_category")
    follow(gr.Dataframe(value=pd.DataFrame(paper_reported()), label=text("paper"), interactive=False), "paper")
    with gr.Row():
        history_plot = follow(gr.LinePlot(lambda: history_frame(runs_frame(state.options.database)), x="run",
                                          y="accuracy", color="series", label=text("history")), "history")
    runs_table = follow(gr.Dataframe(lambda: runs_frame(state.options.database), label=text("runs"),
                                     interactive=False, elem_id="bench-runs"), "runs")
    with gr.Row():
        export_id = follow(gr.Number(value=None, precision=0, label=text("run_id"), elem_id="bench-export-id"),
                           "run_id")
        export_button = follow(gr.Button(text("export"), elem_id="bench-export"), "export", "value")
        refresh_button = follow(gr.Button(text("refresh"), elem_id="bench-refresh"), "refresh", "value")
    export_file = gr.File(label="CSV", interactive=False)
    table_view = TableView(state, labeler, ui_lang, lang)

    def history_outputs() -> tuple[pd.DataFrame, pd.DataFrame]:
        runs = runs_frame(state.options.database)
        return runs, history_frame(runs)

    def render(run_id: int, dataset: Dataset, message: str, ui_lang: str) -> tuple:
        db = open_db(state.options.database)
        try:
            rows = store.answers(db, run_id)
        finally:
            db.close()
        summary = summarize(rows, dataset)
        igakuqa = dataset.layout == "igakuqa"  # IgakuQA's published predictions are its baselines
        if igakuqa:
            summary["baselines"] = baselines_for(dataset, [r["problem_id"] for r in rows])
        by_year = comparison_frame(rows, dataset, "year", () if not igakuqa else ("gpt4", "chatgpt", "gpt3",
                                                                                  "student-majority"))
        if not any(r["exam"] for r in rows):  # not a national exam: no years to compare
            by_year = by_year.iloc[0:0]
        by_category = comparison_frame(rows, dataset, "category", ("gpt4", "student-majority") if igakuqa else ())
        runs, history = history_outputs()
        return (message, results_frame(summary, ui_lang), pass_fail_frame(summary), by_year, by_category, history,
                runs, run_id, table_view.choices_update())

    def run(set_name: str, languages: list[str] | str, mode: str, limit: float | None, ui_lang: str,
            data: str | None, request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008
        name = data or DEFAULT_SET
        try:
            dataset = datasets.get(name)
        except UserError as exc:
            raise Refused(t("bench_no_data_run", ui_lang).format(error=exc)) from exc
        last = None
        try:
            config = RunConfig(spec_for(set_name, dataset), _languages(languages), mode,
                               limit=int(limit) if limit else None, data=name)
            with cancels.claimed(request) as cancel:
                events = run_benchmark(state.engine, state.options.database, config, cancel, dataset)
                with contextlib.closing(live.follow(events, cancel)) as followed:
                    for last in followed:  # after each answer, and every second between them
                        progress((last.done, last.total), unit=t("bench_unit", ui_lang),
                                 desc=live.progress_text(ui_lang))
        except UserError as exc:
            raise Refused(t("bench_failed", ui_lang).format(error=exc)) from exc
        if last is None:  # run_benchmark always yields at least its first and last events
            raise Refused(t("bench_failed", ui_lang).format(error="no progress"))
        return render(last.run_id, dataset, done_text(last, ui_lang), ui_lang)

    outputs = [status, results, pass_fail, year_plot, category_plot, history_plot, runs_table, export_id,
               table_view.runs]
    def starting(request: gr.Request) -> tuple[Any, ...]:
        """Run disabled and Stop usable from the click on, with a cancel flag armed: the run may wait its turn."""
        cancels.arm(request)
        return *controls(True), gr.Timer(active=False)

    ran = run_button.click(starting, outputs=[run_button, stop_button, watch_timer], **QUIET).then(
        run, inputs=[set_name, languages, mode, limit, ui_lang, panel.data], outputs=outputs,
        api_name="self_benchmark", concurrency_limit=1, show_progress_on=status)
    for after in (ran.then, ran.failure):  # a refused or failed run gives the buttons back too
        after(lambda: controls(False), outputs=[run_button, stop_button], **QUIET)

    def watch_on_load(ui_lang: str) -> tuple[Any, Any]:
        """A page opened while a run runs here shows its progress, and follows it."""
        return live.watch_text(ui_lang) or gr.skip(), gr.Timer(active=live.running)

    def watch(ui_lang: str) -> tuple[Any, Any, Any]:
        """The run's progress on a page that did not start it; once it has ended, how it ended and the runs."""
        if live.running:
            return live.watch_text(ui_lang) or gr.skip(), gr.skip(), gr.skip()
        ended = live.event
        return (done_text(ended, ui_lang) if ended else gr.skip(), gr.Timer(active=False),
                runs_frame(state.options.database))

    page.load(watch_on_load, inputs=ui_lang, outputs=[status, watch_timer], **QUIET)
    watch_timer.tick(watch, inputs=ui_lang, outputs=[status, watch_timer, runs_table], **QUIET)

    def stop(request: gr.Request) -> None:
        cancels.cancel(request)

    stop_button.click(stop, inputs=None, outputs=None, queue=False, api_name="self_benchmark_stop")

    def export(run_id: float | None) -> str:
        if not run_id:
            raise Refused("Choose a run to export")
        try:
            db = open_db(state.options.database)
        except UserError as exc:
            raise Refused(str(exc)) from exc
        try:
            run_row = store.get_run(db, int(run_id))
            # one file per run, rewritten on each export, in this server's private folder (gone at exit)
            path = private_export_dir() / export_name(run_row)
            with open_export(path) as handle:
                write_export(db, run_row, "csv", handle)
        except store.RunNotFound as exc:
            raise Refused(str(exc)) from exc
        finally:
            db.close()
        return str(path)

    export_button.click(export, inputs=export_id, outputs=export_file, api_name="self_benchmark_export")

    def refresh() -> tuple[Any, ...]:
        runs, history = history_outputs()
        return history, runs, table_view.choices_update()

    refresh_button.click(refresh, outputs=[history_plot, runs_table, table_view.runs], api_name=False)
