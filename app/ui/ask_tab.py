"""The Ask tab: a conversation with the model (follow-ups keep the context), streamed, with Stop,
Regenerate, New conversation, multiple choice, a context-window check before sending, and history.

API names: ``chat`` (question, choices, language, template, shots, max_tokens, thinking, history)
continues the session's conversation; ``drop_and_send`` (the same inputs) sends after leaving out the
oldest turns the context note named; ``regenerate`` (max_tokens, thinking, history); ``new_conversation``;
``stop``. Each returns the chat messages, the message box, the model card and the context note.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from app.chat import Conversation, Reply, answer, answer_choices, fit, regenerate
from app.conversations import save_turn
from app.engines.base import Engine, EngineBusy
from app.errors import UserError
from app.prompts import paper_templates
from app.qa import Query, parse_choices, validate
from app.ui.cancels import CancelFlag, CancelRegistry
from app.ui.cards import model_card_markdown
from app.ui.chat_view import Message, conversation_messages, note_message, streaming_messages
from app.ui.events import QUIET
from app.ui.history_panel import build_history_panel, owner
from app.ui.i18n import LANGUAGE_CHOICES, THINKING_CHOICES, t
from app.ui.ime_guard import CHAT_INPUT_ID
from app.ui.labels import LANGUAGE_OPTIONS, THINKING_OPTIONS, Labeler
from app.ui.refused import Refused
from app.ui.state import AppState

AUTO_TEMPLATE = "auto"
Outputs = tuple[Any, ...]  # chat, message box, conversation, card, context note (group, text, button)
THINKING = {"default": None, "on": True, "off": False}


@dataclass(frozen=True)
class AskTab:
    """What the page around the tab needs: the events that start answers (``.click``/``.submit`` methods), the
    model card, the thinking switch."""

    starts: tuple[Any, ...]
    card: gr.Markdown
    thinking: gr.Radio


def thinking_switch_visible(engine: Engine) -> bool:
    """Whether thinking can be switched: a chat template that reads ``enable_thinking``, or a server (openai)."""
    template = getattr(engine, "chat_template", None)
    return engine.kind == "openai" or (template is not None and bool(template.switches_thinking))


def build_ask_tab(state: AppState, labeler: Labeler, ui_lang: gr.State, lang: str) -> AskTab:
    """Create the Ask tab's components inside the current ``gr.Tab``."""
    cancels = CancelRegistry()
    conversation = gr.State(None)  # this browser session's Conversation
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = labeler.add(
                gr.Chatbot(label=t("chat", lang), elem_id="chat", buttons=["copy", "copy_all"], sanitize_html=True,
                           allow_tags=False, height=560, feedback_options=None),
                "chat",
            )
            with gr.Group(visible=False, elem_id="context-note") as note:
                note_text = gr.Markdown(elem_id="context-note-text")
                with gr.Row():
                    note_new = labeler.add(gr.Button(t("new_conversation", lang), elem_id="note-new-conversation"),
                                           "new_conversation", "value")
                    drop_button = gr.Button(variant="primary", elem_id="drop-and-send")
            message = labeler.add(
                gr.Textbox(label=t("message", lang), placeholder=t("question_placeholder", lang), lines=1,
                           max_lines=8, elem_id=CHAT_INPUT_ID),
                "message",
            )
            labeler.add(message, "question_placeholder", "placeholder")
            with gr.Row():
                send_button = labeler.add(gr.Button(t("send", lang), variant="primary", elem_id="send"), "send",
                                          "value")
                stop_button = labeler.add(gr.Button(t("stop", lang), variant="secondary", interactive=False,
                                                    elem_id="stop"), "stop", "value")
                regenerate_button = labeler.add(gr.Button(t("regenerate", lang), elem_id="regenerate"),
                                                "regenerate", "value")
                new_button = labeler.add(gr.Button(t("new_conversation", lang), elem_id="new-conversation"),
                                         "new_conversation", "value")
            with labeler.add(gr.Accordion(t("choices_panel", lang), open=False, elem_id="choices-panel"),
                             "choices_panel"):
                choices = labeler.add(
                    gr.Textbox(label=t("choices", lang), lines=5, max_lines=10, elem_id="choices"), "choices"
                )
                with gr.Row():
                    template = labeler.add(
                        gr.Dropdown(choices=[AUTO_TEMPLATE, *paper_templates()], value=AUTO_TEMPLATE,
                                    label=t("template", lang)),
                        "template",
                    )
                    shots = labeler.add(gr.Radio(choices=["0", "1", "3"], value="0", label=t("shots", lang)), "shots")
        with gr.Column(scale=2):
            card = gr.Markdown(model_card_markdown(state.engine), elem_id="answered-by")
            language = labeler.add(
                gr.Radio(choices=LANGUAGE_CHOICES[lang], value="auto", label=t("answer_language", lang)),
                "answer_language",
            )
            labeler.add(language, LANGUAGE_OPTIONS, "choices")
            thinking = labeler.add(
                gr.Radio(choices=THINKING_CHOICES[lang], value="default", label=t("thinking", lang),
                         visible=thinking_switch_visible(state.engine), elem_id="thinking"),
                "thinking",
            )
            labeler.add(thinking, THINKING_OPTIONS, "choices")
            max_tokens = labeler.add(
                gr.Slider(16, 2048, value=512, step=16, label=t("max_tokens", lang), elem_id="max-tokens"),
                "max_tokens",
            )
            keep_history = labeler.add(
                gr.Checkbox(value=state.options.history, label=t("history", lang), elem_id="keep-history"), "history"
            )
            history_list = build_history_panel(state, labeler, lang, conversation, chatbot, ui_lang)

    hidden_note = (gr.update(visible=False), "", gr.skip())

    def stream(engine: Engine, chat: Conversation, reply: Reply, cancel: CancelFlag, history_on: bool,
               ui_lang: str, request: gr.Request) -> Iterator[Outputs]:
        """Chat, message box, conversation, card and note while ``reply`` streams, then with its finished turn
        (kept in the history of ``request``'s user when ``history_on``); after New conversation (``cancel``
        abandoned), the empty conversation it left, never this one again."""
        earlier = conversation_messages(chat, ui_lang)
        failure: UserError | None = None
        not_saved: UserError | None = None
        try:
            for _ in reply:
                if cancel.abandoned:
                    break
                messages = earlier + streaming_messages(reply.question, reply.answer.choices, *reply.visible())
                yield messages, "", chat, model_card_markdown(engine, reply.generation.stats), *hidden_note
        except UserError as exc:  # a server engine that died mid-answer: the text so far is kept
            failure = exc
        finally:  # also when the page was reloaded or closed, or New conversation cut the answer short
            turn = reply.finish()
            if history_on and failure is None:
                try:
                    save_turn(state.options.database, chat, turn, owner(request))
                except UserError as exc:
                    not_saved = exc
        if not_saved is not None:
            raise Refused(str(not_saved))
        if cancel.abandoned:  # a yield already on its way may have shown this conversation again: clear it
            yield [], gr.skip(), Conversation(), gr.skip(), *hidden_note
            return
        messages = conversation_messages(chat, ui_lang)
        if failure is not None:
            messages.append(note_message(t("answer_failed", ui_lang).format(error=failure)))
        yield messages, "", chat, model_card_markdown(engine, reply.generation.stats), *hidden_note

    def begin(engine: Engine, chat: Conversation, start: Callable[[CancelFlag], Reply | Outputs],
              history_on: bool, ui_lang: str, request: gr.Request) -> Iterator[Outputs]:
        """Stream the reply ``start`` begins (with this request's cancel flag), or show what it returned instead
        (the context note); the busy note when the model is taken, a refusal for a bad question."""
        with cancels.claimed(request) as cancel:
            try:
                reply = start(cancel)
            except EngineBusy:
                messages: list[Message] = [*conversation_messages(chat, ui_lang), note_message(t("busy", ui_lang))]
                yield messages, gr.skip(), chat, gr.skip(), *hidden_note
                return
            except UserError as exc:
                raise Refused(str(exc)) from exc
            if isinstance(reply, Reply):
                yield from stream(engine, chat, reply, cancel, history_on, ui_lang, request)
            else:
                yield reply

    def send(question: str, chat: Conversation | None, raw_choices: str, answer_lang: str, template_name: str,
             shot_count: str, token_limit: float, thinking_choice: str, history_on: bool, ui_lang: str,
             request: gr.Request, agree_drop: bool = False) -> Iterator[Outputs]:
        engine = state.engine
        chat = chat or Conversation()
        question, limit, switch = question or "", int(token_limit), THINKING.get(thinking_choice)
        options = parse_choices(raw_choices)

        def start(cancel: CancelFlag) -> Reply | Outputs:
            validate(Query(text=question, choices=options, max_tokens=limit))
            if options:
                return answer_choices(engine, chat, question, options, cancel, limit, answer_lang,
                                      None if template_name == AUTO_TEMPLATE else template_name, int(shot_count))
            room = fit(engine, chat, question, limit, switch, answer_lang, cancel)
            if room.drop is None:
                raise Refused(t("too_long_alone", ui_lang).format(n_ctx=room.n_ctx, max_tokens=limit))
            if room.drop and not agree_drop:  # the context note: the user chooses first
                return (gr.skip(), gr.skip(), chat, gr.skip(), gr.update(visible=True),
                        t("context_full", ui_lang).format(n=room.drop, n_ctx=room.n_ctx),
                        t("drop_and_send", ui_lang).format(n=room.drop))
            return answer(engine, chat, question, cancel, limit, switch, room.drop, answer_lang)

        yield from begin(engine, chat, start, history_on, ui_lang, request)

    def drop_and_send(question: str, chat: Conversation | None, raw_choices: str, answer_lang: str,
                      template_name: str, shot_count: str, token_limit: float, thinking_choice: str, history_on: bool,
                      ui_lang: str, request: gr.Request) -> Iterator[Outputs]:
        yield from send(question, chat, raw_choices, answer_lang, template_name, shot_count, token_limit,
                        thinking_choice, history_on, ui_lang, request, agree_drop=True)

    def regenerate_last(chat: Conversation | None, token_limit: float, thinking_choice: str, history_on: bool,
                        ui_lang: str, request: gr.Request) -> Iterator[Outputs]:
        engine = state.engine
        chat = chat or Conversation()

        def start(cancel: CancelFlag) -> Reply:
            return regenerate(engine, chat, cancel, int(token_limit), THINKING.get(thinking_choice))

        yield from begin(engine, chat, start, history_on, ui_lang, request)

    def new_conversation(request: gr.Request) -> Outputs:
        """An empty conversation; an answer still running is stopped (kept in history as stopped), so the
        next question never carries the previous patient's context."""
        cancels.cancel(request, abandon=True)
        return [], "", Conversation(), gr.skip(), *hidden_note

    outputs = [chatbot, message, conversation, card, note, note_text, drop_button]
    send_inputs = [message, conversation, choices, language, template, shots, max_tokens, thinking, keep_history,
                   ui_lang]
    answering: dict[str, Any] = {"outputs": outputs, "concurrency_limit": "default"}  # as many as the engine's slots
    saved: dict[str, Any] = {"fn": history_list.refresh, "inputs": history_list.picker, "outputs": history_list.picker,
                             "api_visibility": "private"}

    def starting(request: gr.Request) -> dict[str, Any]:
        """Stop usable (red) from the click on, with a cancel flag armed: the answer may wait for the model."""
        cancels.arm(request)
        return gr.update(interactive=True, variant="stop")

    ended: dict[str, Any] = {"fn": lambda: gr.update(interactive=False, variant="secondary"), "outputs": stop_button,
                             **QUIET}
    for trigger, fn, inputs, name in (
        (send_button.click, send, send_inputs, "chat"),
        (message.submit, send, send_inputs, False),
        (drop_button.click, drop_and_send, send_inputs, "drop_and_send"),
        (regenerate_button.click, regenerate_last, [conversation, max_tokens, thinking, keep_history, ui_lang],
         "regenerate"),
    ):
        answered = trigger(starting, outputs=stop_button, **QUIET).then(fn, inputs=inputs, api_name=name,
                                                                        **answering)
        answered.then(**saved).then(**ended)
        answered.failure(**ended)  # a refused question (empty, too long): Stop greys out again
    for start_over, name in ((new_button.click, "new_conversation"), (note_new.click, False), (chatbot.clear, False)):
        start_over(new_conversation, inputs=None, outputs=outputs, api_name=name, queue=False).then(**saved)

    def stop(request: gr.Request) -> None:
        cancels.cancel(request)

    stop_button.click(stop, inputs=None, outputs=None, api_name="stop", queue=False)
    return AskTab((send_button.click, message.submit, drop_button.click, regenerate_button.click), card, thinking)
