"""The Ask tab's History panel: saved conversations listed (date, first question, model), opened to
continue, deleted one by one or all at once (each after a confirmation naming what goes), exported
as Markdown. Each logged-in user sees and deletes only their own (:func:`owner`).

API names: ``history_list``, ``history_open`` (id), ``history_delete`` (id), ``history_delete_all``,
``history_export`` (id, returns the Markdown file).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from app.bench.export import open_export, private_export_dir
from app.chat import Conversation
from app.conversations import delete_all, delete_conversation, export_markdown, list_conversations, load_conversation
from app.errors import UserError
from app.gguf_metadata import printable
from app.ui.cards import escape_markdown
from app.ui.chat_view import conversation_messages
from app.ui.i18n import t
from app.ui.labels import Labeler
from app.ui.refused import Refused
from app.ui.state import AppState

LISTED_TITLE_CHARS = 40


@dataclass(frozen=True)
class HistoryPanel:
    """The list of saved conversations, and the function that refreshes it (after a turn is saved)."""

    picker: gr.Dropdown
    refresh: Callable[[gr.Request, str | None], Any]


def conversation_choices(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(label, id) per saved conversation: "date · first question · model (turns)"."""
    choices = []
    for row in rows:
        title = printable(" ".join(row["title"].split()))[:LISTED_TITLE_CHARS]
        date = row["updated_at"][:16].replace("T", " ")
        choices.append((f"{date} · {title} · {printable(row['model_file'] or '')} ({row['n_turns']})", row["id"]))
    return choices


def owner(request: gr.Request) -> str | None:
    """Whose conversations a request sees: its login (None on a server without logins)."""
    return request.username


def export_path(conversation_id: str) -> Path:
    """One file per conversation, rewritten on each export, in this server's private folder (gone at exit)."""
    return private_export_dir() / f"conversation-{conversation_id[:12]}.md"


def build_history_panel(state: AppState, labeler: Labeler, lang: str, conversation: gr.State, chatbot: gr.Chatbot,
                        ui_lang: gr.State) -> HistoryPanel:
    """Create the History accordion; opening or deleting conversations updates ``conversation`` and ``chatbot``."""
    database = state.options.database

    def listing(request: gr.Request, selected: str | None = None) -> Any:
        choices = conversation_choices(list_conversations(database, owner(request)))
        keep = selected if selected in {choice[1] for choice in choices} else None
        return gr.update(choices=choices, value=keep)

    panel = labeler.add(gr.Accordion(t("history_panel", lang), open=False, elem_id="history-panel"), "history_panel")
    with panel:
        picker = labeler.add(gr.Dropdown(choices=[], value=None, label=t("history_pick", lang),
                                         elem_id="history-pick"), "history_pick")
        with gr.Row():
            open_button = labeler.add(gr.Button(t("history_open", lang), elem_id="history-open"), "history_open",
                                      "value")
            export_button = labeler.add(gr.Button(t("history_export", lang), elem_id="history-export"),
                                        "history_export", "value")
            refresh_button = labeler.add(gr.Button(t("history_refresh", lang), elem_id="history-refresh"),
                                         "history_refresh", "value")
        with gr.Row():
            delete_button = labeler.add(gr.Button(t("history_delete", lang), elem_id="history-delete"),
                                        "history_delete", "value")
            delete_all_button = labeler.add(gr.Button(t("history_delete_all", lang), elem_id="history-delete-all"),
                                            "history_delete_all", "value")
        with gr.Column(visible=False, elem_id="history-confirm") as confirm_box:
            confirm_text = gr.Markdown(elem_id="history-confirm-text")
            with gr.Row():
                confirm_one = labeler.add(gr.Button(t("history_confirm_delete", lang), variant="stop", visible=False,
                                                    elem_id="history-confirm-delete"),
                                          "history_confirm_delete", "value")
                confirm_all = labeler.add(gr.Button(t("history_confirm_delete_all", lang), variant="stop",
                                                    visible=False, elem_id="history-confirm-delete-all"),
                                          "history_confirm_delete_all", "value")
                cancel_button = labeler.add(gr.Button(t("history_cancel", lang), elem_id="history-cancel"),
                                            "history_cancel", "value")
        export_file = gr.File(label="Markdown", interactive=False, elem_id="history-file")

    def refresh(request: gr.Request, selected: str | None = None) -> Any:
        """The saved conversations, keeping ``selected`` chosen while it is still there."""
        try:
            return listing(request, selected)
        except UserError as exc:
            raise Refused(str(exc)) from exc

    def chosen(conversation_id: str | None, ui_lang: str) -> str:
        if not conversation_id:
            raise Refused(t("history_none", ui_lang))
        return conversation_id

    def open_saved(conversation_id: str | None, ui_lang: str, request: gr.Request) -> tuple[Any, ...]:
        try:
            loaded = load_conversation(database, chosen(conversation_id, ui_lang), owner(request))
        except UserError as exc:
            raise Refused(str(exc)) from exc
        return conversation_messages(loaded, ui_lang), loaded

    def forget_exports(conversation_ids: set[str]) -> None:
        """Remove this server's exported files of deleted conversations, and the copies the web UI
        serves as downloads (one per exported version, ``<cache>/<content hash>/<name>``)."""
        for conversation_id in conversation_ids:
            name = export_path(conversation_id).name
            export_path(conversation_id).unlink(missing_ok=True)
            for copy in Path(export_file.GRADIO_CACHE).glob(f"*/{name}"):
                copy.unlink(missing_ok=True)
                with contextlib.suppress(OSError):  # its hash folder, unless something else is in it
                    copy.parent.rmdir()

    def after_delete(gone: set[str], current: Conversation | None, request: gr.Request) -> tuple[Any, ...]:
        """The deleted conversations' exports and kept KV states dropped; the list refreshed, the open
        conversation cleared from the screen if it was one of them, the confirmation hidden."""
        forget_exports(gone)
        for conversation_id in gone:
            state.engine.forget(conversation_id)
        if current is not None and current.id in gone:  # its text leaves the screen too
            return listing(request), [], Conversation(), None, gr.update(visible=False)
        return listing(request), gr.skip(), gr.skip(), None, gr.update(visible=False)

    def ask_to_delete_one(conversation_id: str | None, ui_lang: str, request: gr.Request) -> tuple[Any, ...]:
        """Name the chosen conversation and show the button that deletes it."""
        gone = chosen(conversation_id, ui_lang)
        saved = conversation_choices(list_conversations(database, owner(request)))
        title = next((label for label, value in saved if value == gone), None)
        if title is None:
            raise Refused(t("history_none", ui_lang))
        message = t("history_confirm_one", ui_lang).format(title=escape_markdown(title))
        return gr.update(visible=True), message, gr.update(visible=True), gr.update(visible=False)

    def ask_to_delete_all(ui_lang: str, request: gr.Request) -> tuple[Any, ...]:
        """Count the saved conversations and show the button that deletes them all."""
        count = len(list_conversations(database, owner(request)))
        if not count:
            raise Refused(t("history_none", ui_lang))
        message = t("history_confirm_all", ui_lang).format(count=count)
        return gr.update(visible=True), message, gr.update(visible=False), gr.update(visible=True)

    def delete_one(conversation_id: str | None, current: Conversation | None, ui_lang: str,
                   request: gr.Request) -> tuple[Any, ...]:
        gone = chosen(conversation_id, ui_lang)
        try:
            delete_conversation(database, gone, owner(request))
        except UserError as exc:
            raise Refused(str(exc)) from exc
        return after_delete({gone}, current, request)

    def delete_everything(current: Conversation | None, request: gr.Request) -> tuple[Any, ...]:
        try:
            saved = {row["id"] for row in list_conversations(database, owner(request))}
            delete_all(database, owner(request))
        except UserError as exc:
            raise Refused(str(exc)) from exc
        return after_delete(saved, current, request)

    def export(conversation_id: str | None, ui_lang: str, request: gr.Request) -> str:
        try:
            loaded = load_conversation(database, chosen(conversation_id, ui_lang), owner(request))
        except UserError as exc:
            raise Refused(str(exc)) from exc
        path = export_path(loaded.id)
        with open_export(path) as handle:
            handle.write(export_markdown(loaded))
        return str(path)

    panel.expand(refresh, outputs=picker, api_name="history_list", queue=False)
    refresh_button.click(refresh, inputs=picker, outputs=picker, api_name=False, queue=False)
    open_button.click(open_saved, inputs=[picker, ui_lang], outputs=[chatbot, conversation], api_name="history_open")
    asking = [confirm_box, confirm_text, confirm_one, confirm_all]
    delete_button.click(ask_to_delete_one, inputs=[picker, ui_lang], outputs=asking, api_name=False, queue=False)
    delete_all_button.click(ask_to_delete_all, inputs=ui_lang, outputs=asking, api_name=False, queue=False)
    cancel_button.click(lambda: gr.update(visible=False), outputs=confirm_box, api_name=False, queue=False)
    picker.change(lambda: gr.update(visible=False), outputs=confirm_box, api_name=False, queue=False)
    confirm_one.click(delete_one, inputs=[picker, conversation, ui_lang],
                      outputs=[picker, chatbot, conversation, export_file, confirm_box], api_name="history_delete")
    confirm_all.click(delete_everything, inputs=conversation,
                      outputs=[picker, chatbot, conversation, export_file, confirm_box], api_name="history_delete_all")
    export_button.click(export, inputs=[picker, ui_lang], outputs=export_file, api_name="history_export")
    return HistoryPanel(picker, refresh)
