"""The Model tab's "System / システム" section: the checks of ``jmedllm doctor``, run on request.

Only an administrator (the Model tab's rule, :meth:`AppState.is_admin`) may run them: they show
paths, the environment and the hardware. They run against the model and database this server
uses; the port check is left out (this server holds the port), and so are memory and speed for a
model served elsewhere (the openai engine). Every text is shown escaped, never as Markdown or HTML.
"""

from __future__ import annotations

import gradio as gr

from app.doctor import MARKS, DoctorOptions, Report, detail_lines, run_doctor
from app.ui.cards import escape_markdown
from app.ui.refused import Refused
from app.ui.state import AppState

TITLE = "System / システム"
RUN_LABEL = "Check this machine / この端末を診断"
ADMIN_ONLY = "Only an administrator can run the system checks. / システム診断は管理者のみ実行できます。"
LOADED_NOTE = ("The loaded model already uses memory, so \"available\" RAM leaves it out. / "
               "読み込み済みのモデルが使うメモリは「利用可能」に含まれません。")


def report_markdown(report: Report) -> str:
    """The report as Markdown whose every fact is escaped text: one line per check, then its details."""
    verdict = ("**Blocking problem / 要対応**" if report.failed else "**No blocking problem / 問題なし**")
    lines = [verdict, ""]
    for check in report.checks:
        lines.append(f"- {MARKS[check.status]} **{escape_markdown(check.title)}**: {escape_markdown(check.summary)}")
        lines += [f"    - {escape_markdown(key)}: {escape_markdown(text)}" for key, text in detail_lines(check.details)]
    return "\n".join(lines)


def doctor_options(state: AppState) -> DoctorOptions:
    """What this server runs with: its model file (unless served elsewhere), context and database."""
    card = state.engine.card
    skip = {"port", "memory", "speed"} if card.endpoint else {"port"}
    return DoctorOptions(model=None if card.endpoint else card.path, n_ctx=state.options.n_ctx,
                         host=state.options.host, port=state.options.port, db_path=state.options.database,
                         skip=frozenset(skip))


def build_system_panel(state: AppState) -> None:
    """Create the section inside the current tab: a button, and the report under it once run."""
    with gr.Accordion(TITLE, open=False, elem_id="system-panel"):
        run_button = gr.Button(RUN_LABEL, elem_id="system-check")
        output = gr.Markdown(elem_id="system-report")

    def run(request: gr.Request) -> str:
        if not state.is_admin(request.username):
            raise Refused(ADMIN_ONLY)
        report = run_doctor(doctor_options(state))
        note = "" if state.engine.card.endpoint else f"\n\n{escape_markdown(LOADED_NOTE)}"
        return report_markdown(report) + note

    run_button.click(run, inputs=None, outputs=output, concurrency_limit=1, api_visibility="private")
