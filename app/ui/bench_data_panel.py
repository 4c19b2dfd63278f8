"""The Benchmark tab's question-set chooser: IgakuQA or an imported set, what it holds, and the import.

The chooser lists IgakuQA and every imported set (:mod:`app.bench.library`), read again on page
load and after an import. Under it, one line says what the chosen set holds, or, when it has no
data, what to do (download the IgakuQA zip on a connected machine, carry it over, import it) and
opens the import: an upload (zip, JSONL, CSV) handed to :func:`app.bench.importing.add`. Only an
administrator (the Model tab's rule) may import; anyone else is told to ask one or to use
``jmedllm bench data add`` at the console. Text from the data (labels, file names, error messages)
is shown escaped, never as Markdown or HTML; an error keeps its lines (one problem a line). The Run
button is enabled only while the chosen set can be read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from app.bench import importing, library
from app.bench.data import YEARS, Dataset
from app.bench.loaders.question_set import EMPTY_FILE, UNCLOSED_QUOTE
from app.bench.sets import QUICK_SIZE, is_paper
from app.bench.sources import DEFAULT_SET, load_dataset
from app.errors import UserError
from app.ui.cards import escape_markdown
from app.ui.i18n import (
    BENCH_DATA_FAILED,
    BENCH_DATA_READY,
    BENCH_NO_DATA,
    JA_EMPTY_FILE,
    JA_UNCLOSED_QUOTE,
    t,
)
from app.ui.labels import Labeler
from app.ui.state import AppState

IGAKUQA_LABEL = "IgakuQA (医師国家試験 / Japanese national medical licensing exam 2018-2022)"
QUICK_CHOICE = ("Quick check (20) / クイック", "quick")
IGAKUQA_SET_CHOICES = [QUICK_CHOICE, ("Paper's set (1,455) / 論文セット", "paper")] + [
    (f"Full year {year} / {year}年 全問", str(year)) for year in sorted(YEARS)
]
LANG_CHOICES = [("日本語", "ja"), ("English", "en")]
LANGUAGE_NAMES = dict((value, label) for label, value in LANG_CHOICES)
JA_GLOSSES = {EMPTY_FILE: JA_EMPTY_FILE, UNCLOSED_QUOTE: JA_UNCLOSED_QUOTE}  # shown under these problems in Japanese


def data_choices() -> list[tuple[str, str]]:
    """IgakuQA first (an imported copy of it included), then every other imported set by name."""
    others = [(f"{entry.label} ({entry.name})", entry.name) for entry in library.entries() if entry.name != DEFAULT_SET]
    return [(IGAKUQA_LABEL, DEFAULT_SET), *others]


def set_choices(name: str, dataset: Dataset | None) -> list[tuple[str, str]]:
    """IgakuQA: quick, the paper's set, a full year; any other set: quick or all its questions, each with how
    many it asks ("paper": the questions with the set's paper choice count)."""
    if name == DEFAULT_SET:
        return IGAKUQA_SET_CHOICES
    asked = paper_size(dataset) if dataset is not None else 0
    quick, every = (f" ({min(QUICK_SIZE, asked):,})", f" ({asked:,})") if asked else ("", "")
    return [(f"Quick check{quick} / クイック", "quick"), (f"All questions{every} / 全問", "paper")]


def paper_size(dataset: Dataset) -> int:
    """The questions of ``dataset`` in its "paper" set, the pool a quick check samples."""
    return sum(is_paper(q, dataset.paper_choices) for q in dataset.questions)


class DatasetCache:
    """Question sets read once, by name; a set imported again (its manifest changed) is read again."""

    def __init__(self) -> None:
        self._sets: dict[str, tuple[tuple[str, ...], Dataset]] = {}

    def get(self, name: str) -> Dataset:
        """The set ``name`` (:func:`app.bench.sources.load_dataset`); a DataError says how to get it."""
        entry = library.find(name)
        stamp = (entry.fingerprint, entry.added_at) if entry is not None else ()
        cached = self._sets.get(name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        dataset = load_dataset(name)
        self._sets[name] = (stamp, dataset)
        return dataset

    def clear(self) -> None:
        self._sets.clear()


def plain(text: str) -> str:
    """Text from data or an error message, shown literally on one line."""
    return escape_markdown(" ".join(text.split()))


def lines_markdown(text: str, lang: str | None = None) -> str:
    """An error message shown literally line by line (one problem a line, indents kept); in Japanese
    (``lang`` "ja"), a line about a common problem gets its Japanese explanation under it."""
    shown = []
    for line in text.splitlines():
        if not line.strip():
            continue
        indent = "\u00a0" * 2 * (len(line) - len(line.lstrip()))  # no-break spaces: Markdown keeps them
        shown.append(indent + escape_markdown(line))
        shown += [f"{indent}→ {escape_markdown(ja)}" for marker, ja in JA_GLOSSES.items()
                  if lang == "ja" and marker in line]
    return "  \n".join(shown)  # a hard line break after each


def status_markdown(name: str, dataset: Dataset | None, error: str) -> str:
    """What the chosen set holds; without data, what to do (IgakuQA) or why it cannot be read (both languages)."""
    if dataset is not None:
        languages = ", ".join(LANGUAGE_NAMES[code] for code in dataset.languages)
        return BENCH_DATA_READY.format(label=plain(dataset.label), n=f"{len(dataset.questions):,}",
                                       languages=languages, fingerprint=f"`{dataset.fingerprint[:12]}`")
    if name == DEFAULT_SET:
        return BENCH_NO_DATA.format(error=lines_markdown(error))
    return BENCH_DATA_FAILED.format(label=plain(name), error=lines_markdown(error))


class DataPanel:
    """The chooser, the status line and the import box; :meth:`connect` wires them to the run settings."""

    def __init__(self, state: AppState, labeler: Labeler, lang: str, cache: DatasetCache) -> None:
        self.state = state
        self.cache = cache
        self.data = labeler.add(gr.Dropdown(data_choices(), value=DEFAULT_SET, label=t("bench_data", lang),
                                            elem_id="bench-data"), "bench_data")
        self.status = gr.Markdown(elem_id="bench-data-status")
        self.box = labeler.add(gr.Accordion(t("bench_import_title", lang), open=False, elem_id="bench-import"),
                               "bench_import_title")
        with self.box:
            labeler.add(gr.Markdown(t("bench_import_help", lang)), "bench_import_help", "value")
            with gr.Column(visible=True) as self.refusal:  # swapped for the controls for an administrator on load
                labeler.add(gr.Markdown(t("bench_import_admin_only", lang)), "bench_import_admin_only", "value")
            with gr.Column(visible=False) as self.controls:
                # No file_types: Gradio would refuse any other file (a .tar.gz) in English only, with a traceback
                # in the log; the importer says what the file is and what to do, in the import's own message.
                self.upload = labeler.add(gr.File(label=t("bench_import_file", lang), file_count="single",
                                                  type="filepath", elem_id="bench-import-file"), "bench_import_file")
                with gr.Row():
                    self.name = labeler.add(gr.Textbox(label=t("bench_import_name", lang), max_lines=1,
                                                       elem_id="bench-import-name"), "bench_import_name")
                    self.replace = labeler.add(gr.Checkbox(False, label=t("bench_import_replace", lang),
                                                           elem_id="bench-import-replace"), "bench_import_replace")
                self.button = labeler.add(gr.Button(t("bench_import", lang), variant="primary",
                                                    elem_id="bench-import-button"), "bench_import", "value")
            self.result = gr.Markdown(elem_id="bench-import-status")

    def view(self, name: str | None, set_name: str, languages: list[str] | None) -> tuple[Any, ...]:
        """Set and language choices, the status line, the import box and the Run button for the chosen set
        ``name`` (the button enabled only when the set can be read)."""
        name = name or DEFAULT_SET
        dataset, error = None, ""
        try:
            dataset = self.cache.get(name)
        except UserError as exc:
            error = str(exc)
        sets = set_choices(name, dataset)
        available = dataset.languages if dataset is not None and dataset.languages else ("ja", "en")
        kept = [code for code in (languages or []) if code in available] or [available[0]]
        return (gr.update(choices=sets, value=set_name if set_name in dict(sets).values() else "quick"),
                gr.update(choices=[c for c in LANG_CHOICES if c[1] in available], value=kept),
                status_markdown(name, dataset, error), gr.update(open=dataset is None),
                gr.update(interactive=dataset is not None))

    def connect(self, set_name: gr.Dropdown, languages: gr.CheckboxGroup, run_button: gr.Button,
                ui_lang: gr.State) -> None:
        """Wire the chooser, the page load and the import to the tab's set and language inputs and its Run button."""
        settings = [set_name, languages, self.status, self.box, run_button]

        def on_load(request: gr.Request) -> tuple[Any, ...]:
            admin = self.state.is_admin(request.username)
            return (gr.update(choices=data_choices()), *self.view(DEFAULT_SET, "quick", ["ja"]),
                    gr.update(visible=not admin), gr.update(visible=admin))

        # no triggers and no inputs: on page load (the inputs hold their first values then)
        gr.on(None, on_load, inputs=None, outputs=[self.data, *settings, self.refusal, self.controls],
              queue=False, show_progress="hidden", api_visibility="private")
        self.data.change(self.view, inputs=[self.data, set_name, languages], outputs=settings, queue=False,
                         show_progress="hidden", api_visibility="private")

        def run_import(upload: str | None, name: str, replace: bool, data: str | None, set_name: str,
                       languages: list[str] | None, ui_lang: str, request: gr.Request,
                       progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
            unchanged = (gr.skip(),) * (2 + len(settings))
            if not self.state.is_admin(request.username):
                return (*unchanged, t("bench_import_admin_only", ui_lang))
            if not upload:
                return (*unchanged, t("bench_import_choose", ui_lang))
            try:
                added = importing.add(Path(upload), name=(name or "").strip() or None, replace=bool(replace),
                                      on_progress=lambda done, total: progress((done, total), unit="bytes"),
                                      shown_as=Path(upload).name)  # the name it had on the user's machine
            except importing.NameTaken as exc:  # the CLI's wording names --replace and --name
                taken = t("bench_import_taken", ui_lang).format(names=", ".join(plain(n) for n in exc.names))
                return (*unchanged, t("bench_import_failed", ui_lang).format(error=taken))
            except (UserError, OSError) as exc:
                return (*unchanged, t("bench_import_failed", ui_lang).format(error=lines_markdown(str(exc), ui_lang)))
            self.cache.clear()
            chosen = added[0].name if added else data or DEFAULT_SET
            sets = ", ".join(t("bench_imported_set", ui_lang).format(label=plain(e.label), name=plain(e.name),
                                                                     n=f"{e.questions:,}") for e in added)
            return (None, gr.update(choices=data_choices(), value=chosen), *self.view(chosen, set_name, languages),
                    t("bench_imported", ui_lang).format(sets=sets))

        self.button.click(run_import, inputs=[self.upload, self.name, self.replace, self.data, set_name, languages,
                                              ui_lang],
                          outputs=[self.upload, self.data, *settings, self.result], api_name="bench_data_add",
                          concurrency_limit=1, show_progress_on=self.result)
