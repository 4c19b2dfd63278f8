"""A GGUF's chat template, compiled once and rendered within a time limit, a size limit and a Stop.

A chat template is Jinja code from the model file, so it is untrusted. It runs in jinja2's
``ImmutableSandboxedEnvironment`` (as llama-cpp-python's ``Jinja2ChatFormatter`` runs it, with the
same options, globals and filters, so the prompt is the same text), and within bounds:

* Time and Stop: while a render runs, a trace function (``sys.settrace``, this thread only) is
  called on each line of the template's compiled code and raises once the deadline has passed or
  the cancel event is set. Checking between output pieces would not do: a loop that prints
  nothing yields nothing. A process per render would cost more than the render itself. The
  previous trace function (a debugger, coverage) keeps tracing every other frame and is restored
  afterwards.
* Size: the output is counted as it is produced; what the trace function cannot stop (one C
  operation building a huge value: ``'x' * 10**9``, ``2 ** 10**9``, ``'x'|center(10**9)``,
  ``'%999999999s' % x``, doubling a string with ``+`` or ``~``) is checked before or right after
  it runs, and template constants are no longer folded at compile time through those operations.
* Errors: a syntax error is a :class:`TemplateRenderError` when the model loads; a blocked
  attribute, a runaway template or any other failure is one when a question is asked. Each names
  the problem and the template line.
"""

from __future__ import annotations

import functools
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import FrameType, TracebackType
from typing import Any

import jinja2
import jinja2.ext
import jinja2.meta
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from app.engines.base import EngineError

RENDER_DEADLINE_S = 2.0  # a real chat template renders in milliseconds
MAX_PROMPT_CHARS = 1 << 20  # about 250k tokens of text, above any context window this app loads
MAX_INT_BITS = 1 << 16  # integers a template may build (about 20,000 digits)
_TEMPLATE_FILE = "<template>"  # the file name jinja2 gives code compiled from a string
_HUGE_WIDTH = re.compile(r"\d{7,}")  # a field width of a million or more in a format string

_Tracer = Callable[[FrameType, str, Any], Any]


class TemplateRenderError(EngineError):
    """The model's chat template cannot turn this conversation into a prompt; the message says why."""


class RenderCancelled(EngineError):
    """The render was stopped by its cancel event (the user pressed Stop or Ctrl-C)."""

    def __init__(self) -> None:
        super().__init__("Stopped before the prompt was ready. / プロンプトの作成中に停止しました。")


def _too_big(what: str) -> TemplateRenderError:
    return TemplateRenderError(f"The model's chat template tried to build {what}, more than the "
                               f"{MAX_PROMPT_CHARS:,}-character limit for a prompt.")


def _check_size(value: object) -> object:
    """``value``, unless it is text or a sequence longer than the prompt limit."""
    if isinstance(value, str | list | tuple) and len(value) > MAX_PROMPT_CHARS:
        raise _too_big(f"a value of {len(value):,} items")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _too_big("an integer too large to print")
    return value


def _check_arguments(args: Iterable[object]) -> None:
    """Refuse an integer argument above the prompt limit (a width, a count, a repeat)."""
    for arg in args:
        if isinstance(arg, int) and abs(arg) > MAX_PROMPT_CHARS:
            raise _too_big(f"something {arg:,} long")


def _check_format(spec: object) -> None:
    """Refuse a format string with a field width of a million or more."""
    if isinstance(spec, str) and _HUGE_WIDTH.search(spec):
        raise _too_big("a formatted field a million or more characters wide")


def _check_operands(operator: str, left: object, right: object) -> None:
    """Refuse, before it runs, a ``*``, ``**`` or ``%`` whose result would be too big to build."""
    if operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise _too_big("an integer too large to print")
            return
        count, repeated = (right, left) if isinstance(right, int) else (left, right)
        if isinstance(count, int) and isinstance(repeated, str | list | tuple) \
                and len(repeated) * count > MAX_PROMPT_CHARS:
            raise _too_big(f"a repeated value of {len(repeated) * count:,} items")
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        if max(1, left.bit_length()) * right > MAX_INT_BITS:
            raise _too_big("an integer too large to print")
    elif operator == "%":
        _check_format(left)


def _bounded(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` (a jinja2 filter or join helper) with its arguments and result size-checked."""

    @functools.wraps(function)  # keeps jinja2's pass_context/pass_environment marks
    def call(*args: Any, **kwargs: Any) -> Any:
        _check_arguments(args[1:])
        _check_arguments(kwargs.values())
        if function.__name__ == "do_format" and args:
            _check_format(args[0])
        return _check_size(function(*args, **kwargs))

    return call


def _bounded_concat(pieces: Iterable[str]) -> str:
    """``"".join`` (jinja2's ``concat`` for macros and ``{% set %}`` blocks) that checks the total first."""
    items = list(pieces)
    if sum(map(len, items)) > MAX_PROMPT_CHARS:
        raise _too_big("a block of text")
    return "".join(items)


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with size checks on operators, calls, filters and concatenation."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    concat = staticmethod(_bounded_concat)

    def __init__(self) -> None:
        super().__init__(
            loader=jinja2.BaseLoader(),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[Jinja2ChatFormatter.IgnoreGenerationTags, jinja2.ext.loopcontrols],
        )
        self.filters["tojson"] = Jinja2ChatFormatter.tojson
        self.filters = {name: _bounded(f) for name, f in self.filters.items()}

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        _check_operands(operator, left, right)
        return _check_size(super().call_binop(context, operator, left, right))

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        """Fail at once on a blocked attribute (the sandbox's default is an empty value)."""
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any,
             **kwargs: Any) -> Any:
        _check_arguments(args)
        _check_arguments(kwargs.values())
        return _check_size(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """The sandbox's ``str.format``, refusing a huge field width in the format string."""
        if getattr(value, "__name__", None) in {"format", "format_map"}:
            _check_format(getattr(value, "__self__", None))
        return super().wrap_str_format(value)


def _template_line(tb: TracebackType | None) -> int | None:
    """The template line of the innermost template frame in ``tb`` (jinja2 rewrites them so)."""
    lines = [frame.lineno for frame in traceback.extract_tb(tb) if frame.filename == _TEMPLATE_FILE]
    return lines[-1] if lines else None


def _at_line(message: str, line: int | None) -> str:
    return f"{message} (template line {line})" if line else message


class _Watch:
    """A trace function that stops the template's frames at a deadline or when cancelled."""

    def __init__(self, namespace: Mapping[str, Any], template_line: Callable[[int], int], deadline_s: float,
                 cancel: threading.Event | None, previous: Callable[..., Any] | None) -> None:
        self._namespace = namespace
        self._template_line = template_line
        self._deadline = time.monotonic() + deadline_s
        self._deadline_s = deadline_s
        self._cancel = cancel
        self._previous = previous
        self.stopped: BaseException | None = None

    def __call__(self, frame: FrameType, event: str, arg: Any) -> _Tracer | None:
        if frame.f_globals is self._namespace:
            return self._on_line
        return self._previous(frame, event, arg) if self._previous is not None else None

    def _on_line(self, frame: FrameType, event: str, arg: Any) -> _Tracer | None:
        if event == "line":
            if self._cancel is not None and self._cancel.is_set():
                self.stopped = RenderCancelled()
            elif time.monotonic() > self._deadline:
                self.stopped = TemplateRenderError(_at_line(
                    f"The model's chat template did not finish within {self._deadline_s:g} s "
                    "(a loop that runs too long?)", self._template_line(frame.f_lineno)))
            if self.stopped is not None:
                raise self.stopped  # Python drops the trace function; render() restores the previous one
        return self._on_line


class ChatTemplate:
    """A chat template compiled once; :meth:`render` turns messages into a prompt, bounded."""

    def __init__(self, source: str, bos_token: str, eos_token: str,
                 deadline_s: float = RENDER_DEADLINE_S) -> None:
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.deadline_s = deadline_s
        environment = _BoundedEnvironment()
        try:
            tree = environment.parse(source)
            self._reads = frozenset(jinja2.meta.find_undeclared_variables(tree))  # what it takes from the caller
            self._template = environment.from_string(tree)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateRenderError(_at_line(
                f"The model's chat template has a syntax error: {exc.message}", exc.lineno)) from exc
        # the compiled module's globals: how the trace function knows the template's own frames
        self._namespace: dict[str, Any] = self._template.root_render_func.__globals__
        self._namespace["str_join"] = _bounded(str_join)  # the ~ operator
        self._namespace["markup_join"] = _bounded(markup_join)

    @property
    def switches_thinking(self) -> bool:
        """Whether the template reads ``enable_thinking`` (Qwen3's switch), so reasoning can be turned off."""
        return "enable_thinking" in self._reads

    @property
    def stops(self) -> tuple[str, ...]:
        """Stop strings for a generation after this template's prompt (its end-of-sequence text)."""
        return (self.eos_token,) if self.eos_token else ()

    def render(self, messages: Sequence[Mapping[str, Any]], cancel: threading.Event | None = None,
               thinking: bool | None = None) -> str:
        """The prompt for ``messages``, ending with the assistant's turn; ``thinking`` is passed to the
        template as ``enable_thinking`` (Qwen3's switch) unless None.

        Raises :class:`TemplateRenderError` when the template fails, runs past the deadline or
        builds more than :data:`MAX_PROMPT_CHARS`, and :class:`RenderCancelled` when ``cancel`` is set.
        """
        previous = sys.gettrace()
        watch = _Watch(self._namespace, self._template.get_corresponding_lineno, self.deadline_s, cancel, previous)
        pieces: list[str] = []
        size = 0
        sys.settrace(watch)
        try:
            for piece in self._template.generate(**self._variables(messages, thinking)):
                size += len(piece)
                if size > MAX_PROMPT_CHARS:
                    raise _too_big("a prompt")
                pieces.append(piece)
        except (TemplateRenderError, RenderCancelled):
            raise
        except SecurityError as exc:
            raise TemplateRenderError(_at_line(
                f"The model's chat template was blocked: {exc}", _template_line(exc.__traceback__))) from exc
        except Exception as exc:  # anything a template can raise: its own message is the explanation
            raise TemplateRenderError(_at_line(
                f"The model's chat template failed: {type(exc).__name__}: {exc}",
                _template_line(exc.__traceback__))) from exc
        finally:
            sys.settrace(previous)
        if watch.stopped is not None:  # stopped, but something in jinja2 swallowed the exception
            raise watch.stopped
        return "".join(pieces)

    def _variables(self, messages: Sequence[Mapping[str, Any]], thinking: bool | None) -> dict[str, Any]:
        """What ``Jinja2ChatFormatter`` passes to the template (a plain chat: no tools or functions)."""

        def raise_exception(message: str) -> None:
            raise TemplateRenderError(f"The model's chat template refused the conversation: {message}")

        return {
            "messages": list(messages),
            "eos_token": self.eos_token,
            "bos_token": self.bos_token,
            "raise_exception": raise_exception,
            "add_generation_prompt": True,
            "functions": None,
            "function_call": None,
            "tools": None,
            "tool_choice": None,
            "strftime_now": Jinja2ChatFormatter.strftime_now,
        } | ({} if thinking is None else {"enable_thinking": thinking})


PLAIN_CHAT_STOP = "\n### "


def render_messages(template: ChatTemplate | None, messages: Sequence[Mapping[str, Any]],
                    cancel: threading.Event | None = None, thinking: bool | None = None) -> tuple[str, tuple[str, ...]]:
    """Prompt text and stop strings for ``messages``, through the GGUF's own chat template.

    The template runs bounded: a failing or runaway template raises :class:`TemplateRenderError`; a
    render stopped by ``cancel`` gives an empty prompt. A GGUF without a template gets a plain
    "### System/User/Assistant" layout (the model card says so) instead of llama-cpp-python's
    silent llama-2 fallback.
    """
    if template is None:
        lines = [f"### {m['role'].capitalize()}:\n{m['content']}\n" for m in messages]
        return "".join(lines) + "### Assistant:\n", (PLAIN_CHAT_STOP,)
    try:
        return template.render(messages, cancel, thinking), template.stops
    except RenderCancelled:
        return "", template.stops
