"""Assembling the Gradio Blocks app: notice, language toggle, Ask / Model / Benchmark tabs."""

from __future__ import annotations

import gradio as gr

from app.ui.ask_tab import build_ask_tab
from app.ui.benchmark_tab import build_benchmark_tab
from app.ui.i18n import DEMO_WARNING, NOTICE, UI_LANGUAGES, t
from app.ui.labels import Labeler
from app.ui.model_tab import build_model_tab
from app.ui.state import AppState

# System fonts only: nothing is fetched from a font CDN.
THEME = gr.themes.Default(
    font=["Hiragino Sans", "Noto Sans CJK JP", "Yu Gothic", "system-ui", "sans-serif"],
    font_mono=["Noto Sans Mono", "Menlo", "monospace"],
)


def build_app(state: AppState, lang: str = "ja") -> gr.Blocks:
    """The whole UI, first shown in ``lang`` ("ja" or "en")."""
    labeler = Labeler()
    with gr.Blocks(title="JMedLLM Desk", analytics_enabled=False) as demo:
        ui_lang = gr.State(lang)
        with gr.Row():
            labeler.add(gr.Markdown(t("title", lang)), "title", "value")
            toggle = gr.Radio(choices=list(UI_LANGUAGES), value=next(k for k, v in UI_LANGUAGES.items() if v == lang),
                              label=t("ui_language", lang), elem_id="ui-language", scale=0)
        gr.Markdown(NOTICE, elem_id="notice")
        demo_notice = gr.Markdown(DEMO_WARNING if state.engine.card.is_demo else "", elem_id="demo-warning")
        with gr.Tabs():
            ask_tab = labeler.add(gr.Tab(t("tab_ask", lang), id="ask"), "tab_ask")
            with ask_tab:
                build_ask_tab(state, labeler, ui_lang, lang)
            model_tab = labeler.add(gr.Tab(t("tab_model", lang), id="model"), "tab_model")
            with model_tab:
                build_model_tab(state, labeler, lang, demo_notice)
            bench_tab = labeler.add(gr.Tab(t("tab_benchmark", lang), id="benchmark"), "tab_benchmark")
            with bench_tab:
                build_benchmark_tab(state, labeler, ui_lang, lang)

        def switch(choice: str) -> list:
            new_lang = UI_LANGUAGES[choice]
            return [new_lang, *labeler.updates(new_lang)]

        toggle.change(switch, inputs=toggle, outputs=[ui_lang, *labeler.components], queue=False)
    return demo
