"""The Ask tab: a free or multiple-choice question, a streamed answer, Stop, and the model card."""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr

from app.engines.base import EngineBusy
from app.errors import UserError
from app.history import record_question
from app.prompts import paper_templates
from app.qa import Answer, Query, ask, parse_choices
from app.ui.cancels import CancelRegistry
from app.ui.cards import model_card_markdown
from app.ui.i18n import LANGUAGE_CHOICES, t
from app.ui.labels import LANGUAGE_OPTIONS, Labeler
from app.ui.state import AppState

AUTO_TEMPLATE = "auto"


def _chosen_markdown(answer: Answer, lang: str) -> str:
    if not answer.choices:
        return ""
    return f"**{t('chosen', lang)}:** {answer.chosen_text() or t('abstained', lang)}"


def build_ask_tab(state: AppState, labeler: Labeler, ui_lang: gr.State, lang: str) -> tuple[gr.Button, gr.Markdown]:
    """Create the Ask tab's components inside the current ``gr.Tab``; returns the Ask button and the model card."""
    cancels = CancelRegistry()
    with gr.Row():
        with gr.Column(scale=3):
            question = labeler.add(
                gr.Textbox(label=t("question", lang), placeholder=t("question_placeholder", lang),
                           lines=5, max_lines=30, elem_id="question"),
                "question",
            )
            labeler.add(question, "question_placeholder", "placeholder")
            choices = labeler.add(
                gr.Textbox(label=t("choices", lang), lines=5, max_lines=10, elem_id="choices"), "choices"
            )
            with gr.Row():
                language = labeler.add(
                    gr.Radio(choices=LANGUAGE_CHOICES[lang], value="auto", label=t("answer_language", lang)),
                    "answer_language",
                )
                labeler.add(language, LANGUAGE_OPTIONS, "choices")
                template = labeler.add(
                    gr.Dropdown(choices=[AUTO_TEMPLATE, *paper_templates()], value=AUTO_TEMPLATE,
                                label=t("template", lang)),
                    "template",
                )
                shots = labeler.add(gr.Radio(choices=["0", "1", "3"], value="0", label=t("shots", lang)), "shots")
            with gr.Row():
                max_tokens = labeler.add(
                    gr.Slider(16, 2048, value=512, step=16, label=t("max_tokens", lang), elem_id="max-tokens"),
                    "max_tokens",
                )
                keep_history = labeler.add(
                    gr.Checkbox(value=state.options.history, label=t("history", lang)), "history"
                )
            with gr.Row():
                ask_button = labeler.add(gr.Button(t("ask", lang), variant="primary", elem_id="ask"), "ask", "value")
                stop_button = labeler.add(gr.Button(t("stop", lang), variant="stop", elem_id="stop"), "stop", "value")
        with gr.Column(scale=2):
            answer_box = labeler.add(
                gr.Textbox(label=t("answer", lang), lines=14, max_lines=40, interactive=False,
                           elem_id="answer"),
                "answer",
            )
            chosen = gr.Markdown(elem_id="chosen")
            card = gr.Markdown(model_card_markdown(state.engine), elem_id="answered-by")

    def answer_question(text: str, raw_choices: str, answer_lang: str, template_name: str, shot_count: str,
                        token_limit: float, history_on: bool, ui_lang: str,
                        request: gr.Request) -> Iterator[tuple[str, str, str]]:
        engine = state.engine
        cancel = cancels.fresh(request)
        item = Query(
            text=text or "",
            choices=parse_choices(raw_choices),
            language=answer_lang,
            template=None if template_name == AUTO_TEMPLATE else template_name,
            shots=int(shot_count),
            max_tokens=int(token_limit),
        )
        try:
            answer = ask(engine, item, cancel)
        except EngineBusy:
            yield t("busy", ui_lang), "", model_card_markdown(engine)
            return
        except UserError as exc:
            raise gr.Error(str(exc)) from exc
        try:
            for _ in answer.generation:
                yield answer.generation.text, "", model_card_markdown(engine, answer.generation.stats)
        except UserError as exc:  # a server engine that died mid-answer: the text so far stays on screen
            raise gr.Error(str(exc)) from exc
        stats = answer.generation.stats
        text_out = answer.generation.text
        if stats.finish_reason == "cancelled":
            text_out += f"\n{t('stopped', ui_lang)}"
        if history_on:
            pick = answer.pick
            record_question(state.options.database, engine, item.text, item.choices, answer.language,
                            answer.generation.text, ",".join(pick.letters) if pick and pick.letters else None,
                            stats)
        yield text_out, _chosen_markdown(answer, ui_lang), model_card_markdown(engine, stats)

    ask_button.click(
        answer_question,
        inputs=[question, choices, language, template, shots, max_tokens, keep_history, ui_lang],
        outputs=[answer_box, chosen, card],
        api_name="ask",
        concurrency_limit="default",  # the queue's: as many at once as the engine has slots
    )

    def stop(request: gr.Request) -> None:
        cancels.cancel(request)

    stop_button.click(stop, inputs=None, outputs=None, api_name="stop", queue=False)
    return ask_button, card
