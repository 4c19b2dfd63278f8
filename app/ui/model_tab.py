"""The Model tab: an administrator loads a GGUF of the models folder, by name, with GPU/context settings.

Everyone else sees it read-only: the current model, who loaded it and when. Every load attempt,
allowed or not, is written to the ``model_loads`` log (:mod:`app.audit`).
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr
from gradio.events import Dependency

from app.audit import FAILED, LOADED, REFUSED, LoadAttempt, recent_loads, record_load
from app.demo_model import DEMO_ALIAS
from app.engines.local import LocalEngine
from app.engines.options import CONTEXT_RANGE, DEFAULT_CONTEXT, InvalidOption, parse_gpu_layers
from app.errors import UserError
from app.models import ModelNameError, list_models, resolve_model_name
from app.paths import models_dir
from app.ui.cards import escape_markdown, model_card_markdown
from app.ui.i18n import (
    LOAD_ADMIN_ONLY,
    LOAD_SERVED_ENGINE,
    LOCAL_USER,
    MODEL_CHOOSE,
    MODEL_CONTEXT_RANGE,
    MODEL_LOADED_BY,
    MODEL_LOADS_HEADERS,
    MODEL_NOT_LOADED,
    MODEL_STARTED_WITH,
    t,
)
from app.ui.labels import Labeler
from app.ui.refused import Refused
from app.ui.state import AppState, LoadedModel
from app.ui.system_panel import build_system_panel

LOG_COLUMNS = ("at", "username", "address", "file_name", "sha256", "quantization", "outcome", "message")
# ^ in the order of MODEL_LOADS_HEADERS


class LoadRefused(UserError):
    """This request may not load a model now: not an administrator, or the model is answering."""


def model_names() -> list[str]:
    """What the picker offers: ``demo`` and the GGUF files of the models folder, by name."""
    return [DEMO_ALIAS, *(path.name for path in list_models())]


def models_folder_markdown() -> str:
    """Where the picker looks: the models folder, created when missing, or why it cannot be used."""
    try:
        return f"Models folder / モデルフォルダ: `{models_dir()}`"
    except OSError as exc:  # a file in its place, a read-only disk: the server runs on, with no models to pick
        return (f"Models folder / モデルフォルダ: `{models_dir(create=False)}` cannot be used "
                f"({exc.strerror or exc}); only the demo model can be loaded.")


def current_model_markdown(loaded: LoadedModel) -> str:
    """The current model's card, and who loaded it when."""
    if loaded.version == 0:
        origin = MODEL_STARTED_WITH.format(at=loaded.loaded_at)
    else:
        who = escape_markdown(loaded.username) if loaded.username else LOCAL_USER
        origin = MODEL_LOADED_BY.format(who=who, address=escape_markdown(loaded.address or "?"), at=loaded.loaded_at)
    return f"{model_card_markdown(loaded.engine)}\n\n{origin}"


def refusal_text(state: AppState) -> str:
    """Why this page may not load models: a served engine's model is set at the console, else admins only."""
    engine = state.engine
    return LOAD_ADMIN_ONLY if engine.kind == "local" else LOAD_SERVED_ENGINE.format(engine=engine.kind)


def failure_text(exc: UserError | OSError) -> str:
    """Why nothing was loaded, for Gradio's error toast, which renders HTML: the message escaped (it may echo a
    typed name or a file name), under a bilingual heading unless it is a refusal of this page's own."""
    shown = html.escape(str(exc), quote=False)
    return shown if isinstance(exc, LoadRefused) else MODEL_NOT_LOADED.format(error=shown)


def parse_context(value: float | None) -> int:
    """The context length typed in the tab: empty (or 0) for the default, else a whole number in CONTEXT_RANGE.

    Checked here, not by the field's own bounds: Gradio refused those in English only, with a traceback in
    the server log and no line in the loads log."""
    if not value:
        return DEFAULT_CONTEXT
    low, high = CONTEXT_RANGE
    if not low <= value <= high:
        raise InvalidOption(MODEL_CONTEXT_RANGE.format(low=low, high=high, value=value))
    return int(value)


def _client_address(request: gr.Request) -> str | None:
    return request.client.host if request.client else None


def build_model_tab(state: AppState, labeler: Labeler, lang: str,
                    page: gr.Blocks) -> tuple[gr.Markdown, Dependency]:
    """Create the Model tab inside the current ``gr.Tab``; returns the current-model view and the load event."""
    access = gr.Markdown(refusal_text(state), elem_id="model-access")
    with gr.Column(visible=False, elem_id="model-admin") as admin_view:  # shown to administrators on page load
        gr.Markdown(models_folder_markdown())
        with gr.Row():
            # Custom values reach the server, which accepts names of the models folder only and logs the rest.
            pick = labeler.add(
                gr.Dropdown(choices=model_names(), value=None, label=t("model_pick", lang),
                            allow_custom_value=True, elem_id="model-pick"),
                "model_pick",
            )
            refresh_button = labeler.add(gr.Button(t("refresh_models", lang), elem_id="refresh-models", scale=0),
                                         "refresh_models", "value")
        with gr.Row():
            gpu_layers = labeler.add(gr.Textbox(value=state.options.gpu_layers, label=t("gpu_layers", lang)),
                                     "gpu_layers")
            n_ctx = labeler.add(gr.Number(value=state.options.n_ctx, precision=0, label=t("context", lang)),
                                "context")
        load_button = labeler.add(gr.Button(t("load", lang), variant="primary", elem_id="load-model"), "load",
                                  "value")
    current = labeler.add(gr.Markdown(current_model_markdown(state.loaded), label=t("current_model", lang),
                                      elem_id="current-model"), "current_model")
    log_table = labeler.add(gr.Dataframe(headers=MODEL_LOADS_HEADERS, label=t("model_loads", lang), show_label=True,
                                         interactive=False, wrap=True, visible=False, elem_id="model-loads"),
                            "model_loads")

    def log_rows() -> list[list[Any]]:
        rows = recent_loads(state.options.database)
        return [[(row[c] or "")[:12] if c == "sha256" else row[c] for c in LOG_COLUMNS] for row in rows]

    def view(request: gr.Request) -> tuple[Any, ...]:
        """This user's view: the controls and the log for an administrator, the notice for anyone else."""
        admin = state.may_load_models(request.username)
        return ("" if admin else refusal_text(state), gr.update(visible=admin),
                gr.update(visible=admin, value=log_rows() if admin else []))

    page.load(view, inputs=None, outputs=[access, admin_view, log_table], queue=False,
              api_visibility="private")

    def refresh(request: gr.Request) -> tuple[Any, list[list[Any]]]:
        if not state.may_load_models(request.username):
            raise Refused(refusal_text(state))
        return gr.update(choices=model_names()), log_rows()

    refresh_button.click(refresh, inputs=None, outputs=[pick, log_table], queue=False, api_name="refresh_models")

    def attempt(name: str, raw_layers: str, context: float, request: gr.Request,
                progress: gr.Progress) -> LocalEngine:
        """Check the role, the name and the settings, then load; raises UserError when refused or failed."""
        if not state.may_load_models(request.username):
            raise LoadRefused(refusal_text(state))
        model_path = resolve_model_name(name)
        layers = parse_gpu_layers(raw_layers)
        n_ctx = parse_context(context)
        if state.engine.busy:
            raise LoadRefused(t("busy", lang))
        progress(0.05, desc="Checking file / ファイル確認")

        def hashed(done: int, total: int) -> None:
            progress(0.1 + 0.6 * done / total, desc="sha256 / ハッシュ計算")

        return LocalEngine.load(model_path, on_hash_progress=hashed, n_gpu_layers=layers,
                                n_ctx=n_ctx, n_threads=state.options.threads)

    def load(name: str | None, raw_layers: str, context: float, request: gr.Request,
             progress: gr.Progress = gr.Progress()) -> tuple[str, list[list[Any]]]:  # noqa: B008
        requested = name or ""  # as listed: a file name may begin or end with a space
        if not requested.strip() and state.may_load_models(request.username):  # nothing chosen: not logged
            raise Refused(MODEL_CHOOSE)
        address = _client_address(request)

        def log(outcome: str, file_name: str, message: str = "", engine: LocalEngine | None = None) -> None:
            record_load(state.options.database, LoadAttempt(
                request.username, address, file_name, outcome, message,
                sha256=engine.card.sha256 if engine else None,
                quantization=engine.card.quantization if engine else None,
            ))

        try:
            try:
                engine = attempt(requested, raw_layers, context, request, progress)
            except (UserError, OSError) as exc:
                log(REFUSED if isinstance(exc, LoadRefused | ModelNameError) else FAILED, requested, str(exc))
                raise
            log(LOADED, engine.card.file_name, engine=engine)
        except (UserError, OSError) as exc:
            raise Refused(failure_text(exc)) from exc
        progress(1.0, desc="Loaded / 読み込み完了")
        loaded = state.replace_engine(engine, request.username, address)
        return current_model_markdown(loaded), log_rows()

    load_event = load_button.click(load, inputs=[pick, gpu_layers, n_ctx], outputs=[current, log_table],
                                   api_name="load_model", concurrency_limit=1)
    build_system_panel(state)
    return current, load_event
