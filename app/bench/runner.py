"""Running the benchmark: resumable, one answer committed at a time, progress as events.

``run_benchmark`` is a generator of :class:`RunProgress` events, so the CLI (tqdm) and the UI
(gr.RunProgress) drive the same loop. A run is identified by its settings (model sha256, mode,
template, shots, languages, question set, limit, data fingerprint): starting a run with the same
settings finds the unfinished one, skips what it already answered, and continues (unless a process
runs it now: :mod:`app.bench.run_lock`). On an engine with several slots (llama-server, openai) that
many questions are in flight; each answer is still committed as it arrives, and a server that fails
is waited for and the question asked again.

Every question of a run starts with the same template text (the instructions; with shots, also the
examples). Each question is asked under a conversation key (:func:`prefix_key`: one per template,
language and slot), so the local engine keeps the evaluated prompt and evaluates only what follows
the shared prefix, with the answers of an evaluation from scratch
(:mod:`app.engines.conversation_cache`); the kept states are forgotten when the run's questions end.
``RunConfig(reuse_prefix=False)`` evaluates every prompt from scratch (for comparison).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import sqlite_utils

from app.bench import run_lock, store
from app.bench.data import Dataset, Question
from app.bench.metrics import METRICS, PRIMARY
from app.bench.modes import DEFAULT_MODE, MODES, Mode, Outcome, Request
from app.bench.overlap import run_overlap
from app.bench.prompting import PAPER_MAX_TOKENS, build_prompt, prompt_hash, template_family
from app.bench.report import summarize
from app.bench.sets import SetError, SetSpec, select
from app.bench.sources import load_dataset
from app.db import open_db
from app.engines.base import Engine, EngineUnavailable, NotSupported, PromptTooLong
from app.errors import UserError

LANGUAGES = ("ja", "en")
RECOVERY_WAIT_S = 120.0  # how long a run waits for a failed server engine to come back
RECOVERY_ATTEMPTS = 3


class RunBusy(UserError, RuntimeError):
    """Another process, or another page of this server, is running the run with the same settings."""


class UnknownMode(UserError, ValueError):
    """A mode name that is not in the registry."""


@dataclass(frozen=True)
class RunConfig:
    """What a run asks and how; everything here but ``data`` and ``reuse_prefix`` is part of its
    identity (the data's fingerprint is, whatever path or name reached it).

    ``data``: the question set (:func:`app.bench.sources.load_dataset`: None for IgakuQA, an
    imported set's name, or a path). ``reuse_prefix``: let the engine keep each question's
    evaluated prompt for the next one (the same answers, faster; see :func:`prefix_key`).
    """

    set_spec: SetSpec = SetSpec()
    languages: tuple[str, ...] = ("ja",)
    mode: str = DEFAULT_MODE  # a name in app.bench.modes.MODES
    template: str | None = None
    shots: int = 0
    limit: int | None = None
    data: str | None = None
    max_tokens: int = PAPER_MAX_TOKENS
    reuse_prefix: bool = True

    @property
    def mode_spec(self) -> Mode:
        try:
            return MODES[self.mode]
        except KeyError:
            raise UnknownMode(f"Unknown mode {self.mode!r}; choose one of {', '.join(MODES)}") from None

    @property
    def language_label(self) -> str:
        return "both" if set(self.languages) == set(LANGUAGES) else self.languages[0]

    def identity(self, model_sha256: str, fingerprint: str, engine_kind: str = "local") -> dict:
        identity = {"model_sha256": model_sha256, "mode": self.mode, "template": template_family(self.template),
                    "shots": self.shots, "languages": sorted(self.languages), "set": asdict(self.set_spec),
                    "limit": self.limit, "max_tokens": self.max_tokens, "data": fingerprint}
        if engine_kind != "local":  # a served run resumes only on a served engine (local identities unchanged)
            identity["engine"] = engine_kind
        return identity


@dataclass
class RunProgress:
    run_id: int
    done: int
    total: int
    resumed: int = 0
    correct: int = 0  # the primary metric over the answers of this run so far
    answered_now: int = 0
    elapsed_s: float = 0.0
    status: str = "running"
    last: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.done if self.done else None


def config_key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def plan(dataset: Dataset, config: RunConfig) -> list[tuple[Question, str]]:
    """(question, language) items in order: each question in each language it has, limit applied to
    questions; a language the data does not have at all is left out (none of them: an error)."""
    languages = [lang for lang in config.languages if lang in dataset.languages]
    if not languages:
        raise SetError(f"{dataset.label} has no questions in {' or '.join(config.languages)} "
                       f"(it has {', '.join(dataset.languages) or 'none'})")
    selected = {lang: select(dataset, config.set_spec, lang) for lang in languages}
    per_lang = {lang: {q.problem_id for q in questions} for lang, questions in selected.items()}
    ordered: list[Question] = []
    seen: set[str] = set()
    for questions in selected.values():
        for q in questions:
            if q.problem_id not in seen:
                seen.add(q.problem_id)
                ordered.append(q)
    if config.limit:
        ordered = ordered[: config.limit]
    return [(q, lang) for q in ordered for lang in languages if q.problem_id in per_lang[lang]]


def checked_plan(dataset: Dataset, config: RunConfig) -> list[tuple[Question, str]]:
    """:func:`plan`, after checking the template and shots on its first item, so a bad setting fails
    before anything is stored (or, from the CLI, before the model loads)."""
    items = plan(dataset, config)
    build_prompt(items[0][0], items[0][1], config.template, config.shots)
    return items


def question_fields(question: Question, language: str) -> dict:
    """The answers-table columns that describe the question asked."""
    return {"problem_id": question.problem_id, "language": language, "exam": question.exam,
            "block": question.block, "category": question.category, "points": question.points,
            "text_only": int(question.text_only), "gold": ",".join(question.answer)}


def outcome_fields(outcome: Outcome) -> dict:
    """The answers-table columns that record what the model answered and how it scored."""
    scored = outcome.scored
    return {
        "raw_output": outcome.raw, "response": scored.response, "paper_response": scored.paper_response,
        "picked": ",".join(scored.picked),
        **{name: int(scored.verdicts[name]) for name in METRICS},
        "abstained": int(scored.abstained), "best_similarity": round(scored.best_similarity, 4),
        "scores": json.dumps([round(s, 4) for s in scored.similarities]),
        "kinki_picked": ",".join(scored.kinki_picked), "contraindicated": int(bool(scored.kinki_picked)),
        "prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens,
        "finish_reason": outcome.finish_reason,
    }


def unanswerable_fields(reason: str) -> dict:
    """The answers-table columns for a question the model could not be asked (every metric wrong)."""
    return {"raw_output": "", "response": "", "paper_response": "", "picked": "", **{name: 0 for name in METRICS},
            "abstained": 1, "contraindicated": 0, "finish_reason": reason}


def prefix_key(config: RunConfig, language: str, n_choices: int, lane: int = 0) -> str | None:
    """The conversation key a question is asked under, so that the engine evaluates only what follows
    the prefix it shares with the previous question of that key; None with ``reuse_prefix`` off.

    One key per template (its language and choice count pick it) and per ``lane`` (one of the
    engine's slots: questions in flight together never share a key).
    """
    if not config.reuse_prefix:
        return None
    return f"bench:{template_family(config.template)}:{config.shots}:{language}:{n_choices}:{lane}"


def forget_prefixes(engine: Engine, config: RunConfig, items: list[tuple[Question, str]]) -> None:
    """Drop the evaluated prompts the engine keeps under the keys ``items`` were asked under."""
    keys = {prefix_key(config, language, question.n_choices, lane)
            for question, language in items for lane in range(engine.slots)}
    for key in sorted(k for k in keys if k is not None):
        engine.forget(key)


def answer_question(engine: Engine, question: Question, language: str, config: RunConfig,
                    cancel: threading.Event | None = None, lane: int = 0) -> dict | None:
    """Ask one question (on ``lane``, see :func:`prefix_key`); the answers-table row, or None when
    cancelled mid-answer."""
    prompt, template = build_prompt(question, language, config.template, config.shots)
    request = Request(question, language, prompt, template, config.max_tokens, cancel,
                      prefix_key(config, language, question.n_choices, lane))
    start = time.perf_counter()
    outcome = config.mode_spec.answer(engine, request)
    if outcome is None:
        return None
    return {**question_fields(question, language), "prompt_hash": prompt_hash(prompt), **outcome_fields(outcome),
            "latency_s": round(time.perf_counter() - start, 4)}


def answer_or_record(engine: Engine, question: Question, language: str, config: RunConfig,
                     cancel: threading.Event | None, lane: int = 0) -> dict | None:
    """:func:`answer_question`, with a prompt too long recorded as unanswerable, and a server engine
    that fails waited for (up to :data:`RECOVERY_WAIT_S`) and asked again."""
    attempt = 1
    while True:
        try:
            return answer_question(engine, question, language, config, cancel, lane)
        except PromptTooLong as exc:
            return {**question_fields(question, language), **unanswerable_fields(f"too_long: {exc}")}
        except EngineUnavailable:
            if attempt == RECOVERY_ATTEMPTS or (cancel is not None and cancel.is_set()) \
                    or not engine.recover(RECOVERY_WAIT_S):
                raise
            attempt += 1


Answered = tuple[Question, str, "dict | None"]


def answers_in_flight(engine: Engine, items: list[tuple[Question, str]], config: RunConfig,
                      cancel: threading.Event | None) -> Iterator[Answered]:
    """(question, language, row) as answers arrive, up to ``engine.slots`` questions in flight; a row
    of None is a question stopped mid-answer. Stops asking once ``cancel`` is set. The evaluated
    prompts kept for the next question (:func:`prefix_key`) are forgotten when it ends."""
    try:
        if engine.slots == 1:
            for question, language in items:
                if cancel is not None and cancel.is_set():
                    return
                yield question, language, answer_or_record(engine, question, language, config, cancel)
        else:
            yield from _answers_in_parallel(engine, items, config, cancel)
    finally:
        forget_prefixes(engine, config, items)


def _answers_in_parallel(engine: Engine, items: list[tuple[Question, str]], config: RunConfig,
                         cancel: threading.Event | None) -> Iterator[Answered]:
    stop = threading.Event()  # set by a cancel, or when the caller stops listening
    queue = iter(items)
    free_lanes = list(range(engine.slots))
    with ThreadPoolExecutor(max_workers=engine.slots, thread_name_prefix="bench") as pool:
        pending: dict[Future, tuple[Question, str, int]] = {}

        def fill() -> None:
            while free_lanes and not stop.is_set():
                item = next(queue, None)
                if item is None:
                    return
                lane = free_lanes.pop()
                pending[pool.submit(answer_or_record, engine, *item, config, stop, lane)] = (*item, lane)

        try:
            fill()
            while pending:
                done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                if cancel is not None and cancel.is_set():
                    stop.set()
                for future in done:
                    question, language, lane = pending.pop(future)
                    free_lanes.append(lane)
                    yield question, language, future.result()
                fill()
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)


def _run_fields(engine: Engine, config: RunConfig, dataset: Dataset, key: str, identity: dict,
                items: list[tuple[Question, str]]) -> dict:
    card = engine.card
    n_questions = len({q.problem_id for q, _ in items})
    return {
        "config_key": key, "engine": engine.kind, "endpoint": card.endpoint, "slots": engine.slots,
        "model_file": card.file_name, "model_sha256": card.sha256,
        "quantization": card.quantization, "architecture": card.architecture, "backend": engine.backend,
        "backend_version": engine.backend_version, "device": engine.device,
        "gpu_layers": engine.gpu_layers, "n_ctx": engine.n_ctx, "template": template_family(config.template),
        "shots": config.shots, "mode": config.mode, "language": config.language_label,
        "question_set": stored_set_label(config, n_questions), "set_size": n_questions,
        "limit_n": config.limit, "benchmark": dataset.name, "data_dir": str(dataset.root),
        "data_fingerprint": dataset.fingerprint, "training_overlap": run_overlap(card),
        "settings": json.dumps(identity, ensure_ascii=False), "n_items": len(items),
    }


def stored_set_label(config: RunConfig, n_questions: int) -> str:
    """The set's label as stored with a run, saying what was asked: ``quick20`` for a quick set, but
    ``quick5`` where a bank has only 5 questions, and ``.../first3`` for a run limited to 3."""
    spec = config.set_spec
    if config.limit:
        return f"{spec.label()}/first{n_questions}"
    if spec.name == "quick" and n_questions < spec.quick_size:
        return replace(spec, quick_size=n_questions).label()
    return spec.label()


def final_totals(db: sqlite_utils.Database, run_id: int, wall_s: float) -> dict:
    """The run's totals, speed and throughput (over ``wall_s``, the time spent answering), stored with it."""
    rows = store.answers(db, run_id)
    summary = summarize(rows, None)
    seconds = wall_s
    tokens = sum(r["completion_tokens"] or 0 for r in rows)
    return {
        "wall_s": round(wall_s, 3),
        "totals": json.dumps({"metrics": summary["metrics"], "by_language": summary["by_language"],
                              "contraindicated_questions": summary["contraindicated_questions"],
                              "abstained": summary["abstained"]}, ensure_ascii=False),
        "tokens_per_second": round(tokens / seconds, 2) if seconds and tokens else None,
        "questions_per_minute": round(len(rows) / seconds * 60, 2) if seconds else None,
    }


def run_benchmark(engine: Engine, db_path: Path | str, config: RunConfig, cancel: threading.Event | None = None,
                  dataset: Dataset | None = None) -> Iterator[RunProgress]:
    """Run (or resume) the benchmark, yielding a :class:`RunProgress` after each stored answer."""
    mode = config.mode_spec
    if not mode.available(engine):
        raise NotSupported(f"The {engine.backend} engine cannot run the {mode.name} mode "
                           f"(it needs {mode.requires}).")
    dataset = dataset or load_dataset(config.data)
    items = checked_plan(dataset, config)
    identity = config.identity(engine.card.sha256, dataset.fingerprint, engine.kind)
    key = config_key(identity)
    with contextlib.ExitStack() as held:
        db = held.enter_context(contextlib.closing(open_db(db_path)))
        store.ensure_metric_columns(db)
        existing = store.find_unfinished(db, key)
        run_id = existing["id"] if existing else store.create_run(
            db, _run_fields(engine, config, dataset, key, identity, items))
        _hold(held, db, run_id)  # before a run is taken over: the process running it keeps it
        if existing is not None:
            store.claim_run(db, run_id)
        progress = yield from _answer_all(engine, db, run_id, existing, items, config, cancel)
    yield replace(progress)


def _hold(held: contextlib.ExitStack, db: sqlite_utils.Database, run_id: int) -> None:
    """Mark run ``run_id`` as run by this process until ``held`` closes (:class:`RunBusy` if it runs)."""
    try:
        held.enter_context(run_lock.running(db, run_id))
    except run_lock.RunHeld:
        raise RunBusy(f"Run {run_id} with these settings is running in process "
                      f"{store.get_run(db, run_id)['pid']}") from None


def _answer_all(engine: Engine, db: sqlite_utils.Database, run_id: int, existing: dict | None,
                items: list[tuple[Question, str]], config: RunConfig,
                cancel: threading.Event | None) -> Generator[RunProgress, None, RunProgress]:
    """Ask run ``run_id``'s questions not answered yet (``existing``: its row before this process took
    it over), yielding progress; its last progress, once its status is stored."""
    done_keys = store.answered_keys(db, run_id)
    correct = db.execute(f"select coalesce(sum({PRIMARY}), 0) from answers where run_id = ?", [run_id]).fetchone()[0]
    progress = RunProgress(run_id, len(done_keys), len(items), resumed=len(done_keys), correct=int(correct))
    start = time.perf_counter()
    status = "interrupted"
    todo = [(q, lang) for q, lang in items if (q.problem_id, lang) not in done_keys]
    try:
        yield replace(progress)
        for question, language, row in answers_in_flight(engine, todo, config, cancel):
            if row is None:
                continue  # stopped mid-answer: asked again when the run resumes
            store.add_answer(db, {"run_id": run_id, **row})
            done_keys.add((question.problem_id, language))
            progress.done += 1
            progress.answered_now += 1
            progress.correct += row[PRIMARY]
            progress.elapsed_s = time.perf_counter() - start
            progress.last = {k: row[k] for k in ("problem_id", "language", "response", "picked", "gold",
                                                 *METRICS)}
            yield replace(progress, last=dict(progress.last))
        if progress.done == progress.total:
            status = "complete"
    except GeneratorExit:
        status = "interrupted"
        raise
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseException:
        status = "failed"
        raise
    finally:
        wall_s = (existing or {}).get("wall_s") or 0.0
        store.finish_run(db, run_id, status, final_totals(db, run_id, wall_s + time.perf_counter() - start))
        progress.status = status
    return progress
