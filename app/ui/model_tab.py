"""The Model tab: load another GGUF (a path or a file in the models folder) with GPU/context settings."""

from __future__ import annotations

import gradio as gr

from app.demo_model import DEMO_ALIAS
from app.engines.local import LocalEngine
from app.engines.options import DEFAULT_CONTEXT, parse_gpu_layers
from app.errors import UserError
from app.models import list_models, resolve_model
from app.paths import models_dir
from app.ui.cards import model_card_markdown
from app.ui.i18n import DEMO_WARNING, t
from app.ui.labels import Labeler
from app.ui.state import AppState


def build_model_tab(state: AppState, labeler: Labeler, lang: str, demo_notice: gr.Markdown) -> None:
    """Create the Model tab's components inside the current ``gr.Tab``."""
    gr.Markdown(f"Models folder / モデルフォルダ: `{models_dir()}`")
    with gr.Row():
        path = labeler.add(gr.Textbox(label=t("model_path", lang), elem_id="model-path"), "model_path")
        pick = labeler.add(
            gr.Dropdown(choices=[DEMO_ALIAS, *(p.name for p in list_models())], value=None,
                        label=t("model_pick", lang), allow_custom_value=False),
            "model_pick",
        )
    with gr.Row():
        gpu_layers = labeler.add(gr.Textbox(value=state.options.gpu_layers, label=t("gpu_layers", lang)),
                                 "gpu_layers")
        n_ctx = labeler.add(gr.Number(value=state.options.n_ctx, precision=0, minimum=256, maximum=131072,
                                      label=t("context", lang)), "context")
    load_button = labeler.add(gr.Button(t("load", lang), variant="primary", elem_id="load-model"), "load", "value")
    current = labeler.add(gr.Markdown(model_card_markdown(state.engine), label=t("current_model", lang)),
                          "current_model")

    def load(raw_path: str, picked: str | None, raw_layers: str, context: float,
             progress: gr.Progress = gr.Progress()) -> tuple[str, str]:  # noqa: B008
        spec = (raw_path or "").strip() or picked
        if not spec:
            raise gr.Error("Enter a GGUF path or pick a file. / GGUFのパスを入力するか、ファイルを選んでください。")
        if state.engine.busy:
            raise gr.Error(t("busy", lang))
        try:
            layers = parse_gpu_layers(raw_layers)
            progress(0.05, desc="Checking file / ファイル確認")
            model_path = resolve_model(spec, progress=False)

            def hashed(done: int, total: int) -> None:
                progress(0.1 + 0.6 * done / total, desc="sha256 / ハッシュ計算")

            engine = LocalEngine.load(model_path, on_hash_progress=hashed, n_gpu_layers=layers,
                                      n_ctx=int(context or DEFAULT_CONTEXT), n_threads=state.options.threads)
        except (UserError, OSError) as exc:
            raise gr.Error(str(exc)) from exc
        progress(1.0, desc="Loaded / 読み込み完了")
        state.replace_engine(engine)
        return model_card_markdown(engine), DEMO_WARNING if engine.card.is_demo else ""

    load_button.click(load, inputs=[path, pick, gpu_layers, n_ctx], outputs=[current, demo_notice],
                      api_name="load_model", concurrency_limit=1)
