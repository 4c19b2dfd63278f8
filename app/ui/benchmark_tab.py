"""The Benchmark tab: one button runs the IgakuQA self-benchmark on the loaded model.

Quick check, the paper's set, or a full year; Japanese and/or English; generate or log-likelihood
mode. Live progress (running accuracy, time left), Stop (the run stays resumable: pressing the
button again with the same settings continues it), the results, plots against the baselines, the
history of runs, pass/fail per year with its parts, and CSV export.

The button's API name is ``self_benchmark`` with inputs (set_name, languages, mode, limit).
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from app.bench import store
from app.bench.baselines import BASELINE_FILES, baseline_breakdown, paper_reported
from app.bench.data import EXAMS, YEARS, DataError, Dataset, load_dataset
from app.bench.export import write_export
from app.bench.report import summarize
from app.bench.runner import RunBusy, RunConfig, run_benchmark
from app.bench.sets import SetError, SetSpec
from app.engine import EngineError
from app.ui.state import AppState

LABELS: dict[str, dict[str, str]] = {
    "intro": {
        "en": "### IgakuQA self-benchmark\nThe Japanese national medical licensing exam (2018-2022), scored like the "
              "JMedLLM paper (Gestalt match) and at the bedside (pass/fail, contraindicated picks). Every run is kept "
              "in the local database; Stop keeps it resumable.",
        "ja": "### IgakuQA セルフベンチマーク\n医師国家試験（2018〜2022年）を、JMedLLM 論文と同じ方法（Gestalt 一致）と臨床の観点"
              "（合否・禁忌肢の選択）で採点します。結果はすべてローカルのデータベースに保存され、中止しても再開できます。",
    },
    "set": {"en": "Question set", "ja": "問題セット"},
    "languages": {"en": "Languages", "ja": "言語"},
    "mode": {"en": "Mode", "ja": "方式"},
    "limit": {"en": "Limit (questions, 0 = all)", "ja": "問題数の上限（0 = すべて）"},
    "run": {"en": "Run self-benchmark", "ja": "セルフベンチマークを実行"},
    "stop": {"en": "Stop", "ja": "中止"},
    "status": {"en": "Status", "ja": "状況"},
    "results": {"en": "Results", "ja": "結果"},
    "pass_fail": {"en": "NMLE pass/fail per year", "ja": "年度別の国試合否"},
    "by_year": {"en": "Accuracy by year vs baselines", "ja": "年度別正答率（ベースライン比較）"},
    "by_category": {"en": "Accuracy by category vs baselines", "ja": "分野別正答率（ベースライン比較）"},
    "history": {"en": "History of runs", "ja": "実行履歴"},
    "runs": {"en": "Runs", "ja": "実行一覧"},
    "run_id": {"en": "Run to export", "ja": "エクスポートする実行"},
    "export": {"en": "Export CSV", "ja": "CSV をエクスポート"},
    "refresh": {"en": "Refresh", "ja": "更新"},
    "baselines": {"en": "Baselines on the same questions", "ja": "同じ問題でのベースライン"},
    "paper": {"en": "Reported in the JMedLLM paper (its own question set)", "ja": "JMedLLM 論文の報告値（論文の問題セット）"},
}

SET_CHOICES = [("Quick check (20) / クイック", "quick"), ("Paper's set (1,455) / 論文セット", "paper")] + [
    (f"Full year {year} / {year}年 全問", str(year)) for year in sorted(YEARS)
]
MODE_CHOICES = [("Generate (paper's scoring) / 生成", "generate"), ("Log-likelihood / 対数尤度", "loglik")]
LANG_CHOICES = [("日本語", "ja"), ("English", "en")]
METRIC_NAMES = {"gestalt_paper": "Gestalt (paper)", "gestalt": "Gestalt (corrected)", "exact": "Exact",
                "letter": "Letter (IgakuQA)"}


def L(key: str, lang: str) -> str:  # noqa: N802
    return LABELS[key].get(lang, LABELS[key]["en"])


class _Cancels:
    """One Stop flag per browser session."""

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def fresh(self, session: str) -> threading.Event:
        with self._lock:
            event = self._events[session] = threading.Event()
            return event

    def cancel(self, session: str) -> None:
        with self._lock:
            event = self._events.get(session)
        if event is not None:
            event.set()


def spec_for(set_name: str) -> SetSpec:
    if set_name == "quick":
        return SetSpec("quick")
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


def results_frame(summary: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for lang, totals in summary.get("by_language", {}).items():
        for metric, t in totals.items():
            rows.append({"language": lang, "metric": METRIC_NAMES.get(metric, metric), "correct": t["correct"],
                         "total": t["total"], "accuracy %": round((t["accuracy"] or 0) * 100, 1)})
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
        rows.append({"language": "ja", "metric": f"Baseline: {b['name']} (letter)", "correct": b["correct"],
                     "total": b["total"], "accuracy %": round((b["accuracy"] or 0) * 100, 1)})
    return pd.DataFrame(rows, columns=["language", "metric", "correct", "total", "accuracy %"])


def pass_fail_frame(summary: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for o in summary.get("pass_fail", []):
        rows.append({
            "language": o["language"], "year": o["year"],
            "estimate": "image questions counted wrong" if o["estimate"] == "images_wrong" else "text-only projection",
            "result": "PASS" if o["passed"] else "FAIL",
            "required (B+E)": f"{o['required_points']}/{o['required_total']} (≥{o['required_line']})",
            "general+clinical": f"{o['general_points']}/{o['general_total']} (≥{o['general_line']})",
            "kinki": f"{o['kinki_questions']} (≤{o['kinki_max']})",
            "answered": f"{o['answered']}/{o['questions']}" + ("" if o["complete"] else " incomplete"),
        })
    return pd.DataFrame(rows, columns=["language", "year", "estimate", "result", "required (B+E)",
                                       "general+clinical", "kinki", "answered"])


def comparison_frame(rows: list[dict], dataset: Dataset, key: str) -> pd.DataFrame:
    """Model accuracy (gestalt_paper) and each baseline's (letter) per ``key`` on the same questions."""
    out = []
    column = "exam" if key == "year" else "category"
    groups: dict[Any, list[int]] = {}
    for r in rows:
        groups.setdefault(r[column], []).append(int(r["gestalt_paper"]))
    label = (lambda v: str(EXAMS.get(v, v))) if key == "year" else str
    for value, hits in groups.items():
        out.append({key: label(value), "who": "this model", "accuracy": round(sum(hits) / len(hits), 4)})
    ids = [r["problem_id"] for r in rows]
    attr = "exam" if key == "year" else "category"
    for name in ("gpt4", "chatgpt", "gpt3", "student-majority"):
        for value, acc in baseline_breakdown(dataset, name, ids, attr).items():
            out.append({key: label(value), "who": BASELINE_FILES[name], "accuracy": acc})
    return pd.DataFrame(out, columns=[key, "who", "accuracy"])


def runs_frame(db_path: Path) -> pd.DataFrame:
    import json

    cols = ["id", "started_at", "status", "model_file", "mode", "language", "question_set", "answered",
            "gestalt_paper %"]
    if not Path(db_path).exists():
        return pd.DataFrame(columns=cols)
    db = store.open_db(db_path)
    try:
        out = []
        for r in store.list_runs(db):
            totals = json.loads(r["totals"]) if r.get("totals") else {}
            acc = totals.get("metrics", {}).get("gestalt_paper", {}).get("accuracy")
            out.append({"id": r["id"], "started_at": r["started_at"], "status": r["status"],
                        "model_file": r["model_file"], "mode": r["mode"], "language": r["language"],
                        "question_set": r["question_set"], "answered": f"{r['n_answered']}/{r['n_items']}",
                        "gestalt_paper %": round(acc * 100, 1) if acc is not None else None})
        return pd.DataFrame(out, columns=cols)
    finally:
        db.close()


def history_frame(runs: pd.DataFrame) -> pd.DataFrame:
    done = runs.dropna(subset=["gestalt_paper %"]) if len(runs) else runs
    if not len(done):
        return pd.DataFrame(columns=["run", "accuracy", "series"])
    return pd.DataFrame({"run": done["id"].astype(int), "accuracy": done["gestalt_paper %"].astype(float),
                         "series": done["mode"] + " · " + done["language"]}).sort_values("run")


def build_benchmark_tab(state: AppState, lang: str = "en") -> None:
    """Create the Benchmark tab's components inside the current ``gr.Tab``."""
    cancels = _Cancels()
    dataset_cache: dict[str, Dataset] = {}

    def get_dataset() -> Dataset:
        if "d" not in dataset_cache:
            dataset_cache["d"] = load_dataset()
        return dataset_cache["d"]

    gr.Markdown(L("intro", lang))
    with gr.Row():
        set_name = gr.Dropdown(SET_CHOICES, value="quick", label=L("set", lang), elem_id="bench-set")
        languages = gr.CheckboxGroup(LANG_CHOICES, value=["ja"], label=L("languages", lang), elem_id="bench-langs")
        mode = gr.Radio(MODE_CHOICES, value="generate", label=L("mode", lang), elem_id="bench-mode")
        limit = gr.Number(value=0, precision=0, minimum=0, label=L("limit", lang), elem_id="bench-limit")
    with gr.Row():
        run_button = gr.Button(L("run", lang), variant="primary", elem_id="bench-run")
        stop_button = gr.Button(L("stop", lang), variant="stop", elem_id="bench-stop")
    status = gr.Markdown(elem_id="bench-status")
    results = gr.Dataframe(label=L("results", lang), interactive=False, elem_id="bench-results")
    pass_fail = gr.Dataframe(label=L("pass_fail", lang), interactive=False, elem_id="bench-passfail")
    with gr.Row():
        year_plot = gr.BarPlot(x="year", y="accuracy", color="who", label=L("by_year", lang), y_lim=[0, 1])
        category_plot = gr.BarPlot(x="category", y="accuracy", color="who", label=L("by_category", lang),
                                   y_lim=[0, 1], x_label_angle=-45)
    paper_table = gr.Dataframe(value=pd.DataFrame(paper_reported()), label=L("paper", lang), interactive=False)
    with gr.Row():
        history_plot = gr.LinePlot(lambda: history_frame(runs_frame(state.options.database)), x="run",
                                   y="accuracy", color="series", label=L("history", lang))
    runs_table = gr.Dataframe(lambda: runs_frame(state.options.database), label=L("runs", lang),
                              interactive=False, elem_id="bench-runs")
    with gr.Row():
        export_id = gr.Number(value=None, precision=0, label=L("run_id", lang), elem_id="bench-export-id")
        export_button = gr.Button(L("export", lang), elem_id="bench-export")
        refresh_button = gr.Button(L("refresh", lang), elem_id="bench-refresh")
    export_file = gr.File(label="CSV", interactive=False)

    def history_outputs() -> tuple[pd.DataFrame, pd.DataFrame]:
        runs = runs_frame(state.options.database)
        return runs, history_frame(runs)

    def render(run_id: int, message: str) -> tuple:
        db = store.open_db(state.options.database)
        try:
            rows = store.answers(db, run_id)
        finally:
            db.close()
        dataset = get_dataset()
        summary = summarize(rows, dataset)
        from app.bench.baselines import baselines_for

        summary["baselines"] = baselines_for(dataset, [r["problem_id"] for r in rows])
        runs, history = history_outputs()
        return (message, results_frame(summary), pass_fail_frame(summary), comparison_frame(rows, dataset, "year"),
                comparison_frame(rows, dataset, "category"), history, runs, run_id)

    def run(set_name: str, languages: list[str] | str, mode: str, limit: float | None,
            request: gr.Request, progress: gr.Progress = gr.Progress()):  # noqa: B008
        session = getattr(request, "session_hash", None) or "api"
        cancel = cancels.fresh(session)
        try:
            spec = spec_for(set_name)
            dataset = get_dataset()
        except (SetError, DataError) as exc:
            raise gr.Error(str(exc)) from exc
        config = RunConfig(spec, _languages(languages), mode if mode in ("generate", "loglik") else "generate",
                           limit=int(limit) if limit else None)
        last = None
        try:
            for event in run_benchmark(state.engine, state.options.database, config, cancel, dataset):
                last = event
                acc = f"{event.accuracy * 100:.1f}%" if event.accuracy is not None else "-"
                eta = f"{event.eta_s:.0f} s" if event.eta_s is not None else "-"
                progress((event.done, event.total), desc=f"accuracy {acc} · left {eta}", unit="answers")
        except (RunBusy, EngineError, SetError) as exc:
            raise gr.Error(str(exc)) from exc
        assert last is not None
        acc = f"{last.accuracy * 100:.1f}%" if last.accuracy is not None else "-"
        resumed = f" (resumed with {last.resumed} already answered)" if last.resumed else ""
        message = (f"**Run {last.run_id}: {last.status}** · {last.done}/{last.total} answers{resumed} · "
                   f"Gestalt (paper) accuracy {acc}")
        if last.status != "complete":
            message += " · press the button again with the same settings to resume / 同じ設定で再実行すると再開します"
        return render(last.run_id, message)

    outputs = [status, results, pass_fail, year_plot, category_plot, history_plot, runs_table, export_id]
    run_button.click(run, inputs=[set_name, languages, mode, limit], outputs=outputs, api_name="self_benchmark",
                     concurrency_limit=1)

    def stop(request: gr.Request) -> None:
        cancels.cancel(getattr(request, "session_hash", None) or "api")

    stop_button.click(stop, inputs=None, outputs=None, queue=False, api_name="self_benchmark_stop")

    def export(run_id: float | None) -> str:
        if not run_id:
            raise gr.Error("Choose a run to export")
        db = store.open_db(state.options.database)
        try:
            run_row = store.get_run(db, int(run_id))
            path = Path(tempfile.mkdtemp(prefix="jmedllm-bench-")) / f"igakuqa-run-{int(run_id)}.csv"
            with path.open("w", encoding="utf-8", newline="") as handle:
                write_export(db, run_row, "csv", handle)
        except KeyError as exc:
            raise gr.Error(str(exc)) from exc
        finally:
            db.close()
        return str(path)

    export_button.click(export, inputs=export_id, outputs=export_file, api_name="self_benchmark_export")
    def refresh() -> tuple[pd.DataFrame, pd.DataFrame]:
        runs, history = history_outputs()
        return history, runs

    refresh_button.click(refresh, outputs=[history_plot, runs_table], api_name=False)
