"""Assembling the Gradio Blocks app: notice, language toggle, Ask / Model / Benchmark tabs."""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.engines.base import Engine
from app.ui.ask_tab import build_ask_tab, thinking_switch_visible
from app.ui.benchmark_tab import build_benchmark_tab
from app.ui.cards import model_card_markdown
from app.ui.events import QUIET
from app.ui.i18n import DEMO_WARNING, NOTICE, UI_LANGUAGES, t
from app.ui.labels import Labeler
from app.ui.model_tab import build_model_tab, current_model_markdown
from app.ui.state import AppState

# System fonts only: nothing is fetched from a font CDN.
THEME = gr.themes.Default(
    font=["Hiragino Sans", "Noto Sans CJK JP", "Yu Gothic", "system-ui", "sans-serif"],
    font_mono=["Noto Sans Mono", "Menlo", "monospace"],
)
REFRESH_SECONDS = 5.0  # how soon an open page shows a model loaded elsewhere
LOGOUT_LINK = "logout?all_session=false"  # Gradio's route; relative, so it works behind a proxy's sub-path too


def demo_banner(engine: Engine) -> str:
    """The demo warning while the demo model answers, else nothing."""
    return DEMO_WARNING if engine.card.is_demo else ""


def build_app(state: AppState, lang: str = "ja") -> gr.Blocks:
    """The whole UI, first shown in ``lang`` ("ja" or "en")."""
    labeler = Labeler()
    with gr.Blocks(title="JMedLLM Desk", analytics_enabled=False) as demo:
        ui_lang = gr.State(lang)
        with gr.Row():
            labeler.add(gr.Markdown(t("title", lang)), "title", "value")
            toggle = gr.Radio(choices=list(UI_LANGUAGES), value=next(k for k, v in UI_LANGUAGES.items() if v == lang),
                              label=t("ui_language", lang), elem_id="ui-language", scale=0)
            if state.options.login_required:  # a shared ward PC: the next person must not inherit this session
                labeler.add(gr.Button(t("logout", lang), link=LOGOUT_LINK, elem_id="logout", scale=0), "logout",
                            "value")
        gr.Markdown(NOTICE, elem_id="notice")
        demo_notice = gr.Markdown(demo_banner(state.engine), elem_id="demo-warning")
        shown_version = gr.State(state.loaded.version)  # the load whose model this page shows
        with gr.Tabs():
            ask_tab = labeler.add(gr.Tab(t("tab_ask", lang), id="ask"), "tab_ask")
            with ask_tab:
                ask = build_ask_tab(state, labeler, ui_lang, lang)
            model_tab = labeler.add(gr.Tab(t("tab_model", lang), id="model"), "tab_model")
            with model_tab:
                current_model, load_event = build_model_tab(state, labeler, lang, demo)
            bench_tab = labeler.add(gr.Tab(t("tab_benchmark", lang), id="benchmark"), "tab_benchmark")
            with bench_tab:
                build_benchmark_tab(state, labeler, ui_lang, lang, demo)

        def switch(choice: str) -> list:
            new_lang = UI_LANGUAGES[choice]
            return [new_lang, *labeler.updates(new_lang)]

        toggle.change(switch, inputs=toggle, outputs=[ui_lang, *labeler.components], queue=False)

        def refresh(version: int) -> tuple[Any, ...]:
            """Banner, cards and thinking switch of the model that answers now, if another load than the page shows."""
            loaded = state.loaded
            if loaded.version == version:
                return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return (demo_banner(loaded.engine), model_card_markdown(loaded.engine), current_model_markdown(loaded),
                    gr.update(visible=thinking_switch_visible(loaded.engine)), loaded.version)

        # Off the queue, so a refresh never waits behind (or holds up) a question.
        page_refresh: dict[str, Any] = {
            "fn": refresh, "inputs": shown_version,
            "outputs": [demo_notice, ask.card, current_model, ask.thinking, shown_version], **QUIET,
        }
        demo.load(**page_refresh)
        gr.Timer(REFRESH_SECONDS).tick(**page_refresh)
        for start in ask.starts:  # before each answer, too
            start(**page_refresh)
        load_event.success(**page_refresh)
    return demo
