"""Training examples: question sets and instruction/response JSONL for LoRA, plain text for pre-training.

A question in the documented question-set format (docs/question_sets.md) becomes the benchmark's
own prompt (:func:`app.bench.prompting.build_prompt`, the paper's template: the paper found that a
training prompt unlike the evaluation prompt costs 7B models accuracy) and, as the completion, the
gold choice texts joined with "," -- exactly the paper's gold, which its gestalt scoring compares
with the first line of the answer. A question's explanation, when it has one, follows on the next
lines, so the first line stays the answer. The loss is on the completion only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.bench.data import DataError, decode_utf8_text, json_object
from app.bench.loaders.question_set import read_questions
from app.bench.prompting import build_prompt
from app.extraction import letter_index
from model_tools.train.errors import TrainError

CORPUS_SUFFIX = ".txt"
PAIRS_EXPECTED = "--data expects a file: a JSONL or CSV question set, or instruction/response JSONL"
CORPUS_EXPECTED = f"--corpus expects a UTF-8 text file or a folder of {CORPUS_SUFFIX} files"


@dataclass(frozen=True)
class Example:
    """One training pair: the loss is computed on ``completion`` only."""

    prompt: str
    completion: str
    source: str  # "file.jsonl:3"


@dataclass(frozen=True)
class TrainingData:
    """What a run trains on, the texts the leakage check compares, and the files' fingerprint."""

    rows: list[dict[str, str]]  # {"prompt", "completion"} or {"text"}: TRL's dataset rows
    texts: list[str]  # what the leakage check compares: each whole example
    files: list[Path]
    fingerprint: str
    kind: str  # "question-set", "instruction" or "corpus"


def fingerprint(files: Sequence[Path]) -> str:
    """sha256 over the files' names and bytes, in the given order."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """An OSError in the block (permission denied, an I/O error) as a TrainError naming its file or ``path``."""
    try:
        yield
    except OSError as exc:
        raise TrainError(f"cannot read {exc.filename or path}: {exc.strerror or exc}") from None


def _raise(exc: OSError) -> None:
    """For :func:`os.walk`: a folder that cannot be listed is an error, not skipped."""
    raise exc


def _read(path: Path, expected: str) -> bytes:
    """The bytes of the non-empty file ``path``; a folder, a missing path or another kind of file is a
    TrainError ending with ``expected``, an unreadable or empty file one saying so."""
    with _reading(path):
        if path.is_dir():
            raise TrainError(f"{path} is a folder; {expected}")
        if not path.is_file():
            raise TrainError(f"{path} {'is not a regular file' if path.exists() else 'not found'}; {expected}")
        raw = path.read_bytes()
    if not raw.strip():
        raise TrainError(f"{path}: the file is empty")
    return raw


def _text(raw: bytes, name: str, expected: str) -> str:
    """``raw`` as UTF-8 text without a byte-order mark; other bytes are a TrainError naming the file and line."""
    try:
        return decode_utf8_text(raw, name)
    except DataError as exc:
        raise TrainError(f"{exc}. {expected}") from None


def _first_object(text: str, path: Path) -> dict[str, object]:
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                return json_object(line, f"{path.name}:{number}")
            except DataError as exc:
                raise TrainError(str(exc)) from exc
    raise TrainError(f"{path}: the file is empty")


def answer_completion(choices: Sequence[str], answer: Sequence[str], explanation: str = "") -> str:
    """The paper's gold (choice texts joined with ","), then the explanation on the following lines."""
    line = ",".join(choices[letter_index(letter)] for letter in answer)
    return f"{line}\n{explanation.strip()}" if explanation.strip() else line


def question_examples(raw: bytes, name: str, language: str) -> list[Example]:
    """Examples from a question set (JSONL or CSV), each rendered with the benchmark's template."""
    try:
        questions = read_questions(raw, name)
    except DataError as exc:
        raise TrainError(str(exc)) from exc
    missing = [q.source for q in questions if language not in q.languages]
    if missing:
        raise TrainError(f"{len(missing)} question(s) have no {language} text, e.g. {', '.join(missing[:5])}; "
                         f"choose --language {'en' if language == 'ja' else 'ja'} or add a translation")
    examples = []
    for question in questions:
        prompt, _ = build_prompt(question, language)
        choices = question.choices(language)
        if not choices or any(len(letter) != 1 for letter in question.answer):
            raise TrainError(f"{question.source}: a training question needs choices and answer letters")
        completion = answer_completion(choices, question.answer, question.explanation)
        examples.append(Example(prompt, completion, question.source))
    return examples


def instruction_examples(text: str, name: str) -> list[Example]:
    """Examples from JSONL lines ``{"instruction": ..., "response": ...}`` (both non-empty strings)."""
    examples = []
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not valid JSON ({exc.msg})")
            continue
        if not isinstance(value, dict) or not all(
                isinstance(value.get(key), str) and value[key].strip() for key in ("instruction", "response")):
            problems.append(f'{where}: expected an object with non-empty string fields "instruction" and "response"')
            continue
        examples.append(Example(value["instruction"], value["response"], where))
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise TrainError("; ".join(problems[:10]) + more)
    return examples


def load_pairs(path: Path, language: str) -> TrainingData:
    """The LoRA data: a question set (.jsonl with "question", or .csv) or instruction/response JSONL."""
    path = Path(path)
    raw = _read(path, PAIRS_EXPECTED)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise TrainError(f"{path.name}: expected a .jsonl or .csv file (question set or instruction/response)")
    text = _text(raw, path.name, PAIRS_EXPECTED) if suffix == ".jsonl" else None  # CSV: read_questions decodes
    if text is not None and "instruction" in _first_object(text, path):
        examples, kind = instruction_examples(text, path.name), "instruction"
    else:
        examples, kind = question_examples(raw, path.name, language), "question-set"
    if not examples:
        raise TrainError(f"{path}: no training examples")
    rows = [{"prompt": e.prompt, "completion": e.completion} for e in examples]
    return TrainingData(rows, [f"{e.prompt}\n{e.completion}" for e in examples], [path], fingerprint([path]), kind)


def corpus_files(path: Path) -> list[Path]:
    """``path`` itself (checked when read), or the .txt files under the folder ``path`` in name order."""
    path = Path(path)
    with _reading(path):
        if not path.is_dir():
            return [path]
        files = sorted(Path(folder, name) for folder, _, names in os.walk(path, onerror=_raise)
                       for name in names if name.endswith(CORPUS_SUFFIX) and Path(folder, name).is_file())
    if not files:
        raise TrainError(f"no {CORPUS_SUFFIX} files in {path}")
    return files


def load_corpus(path: Path) -> TrainingData:
    """The pre-training data: UTF-8 text, one document a non-empty line (packed into sequences later)."""
    files = corpus_files(path)
    texts = []
    for file in files:
        text = _text(_read(file, CORPUS_EXPECTED), str(file), CORPUS_EXPECTED)
        texts += [line.strip() for line in text.splitlines() if line.strip()]
    if not texts:
        raise TrainError(f"{path}: the corpus is empty")
    return TrainingData([{"text": t} for t in texts], texts, files, fingerprint(files), "corpus")


def split(rows: list[dict[str, str]], fraction: float, seed: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """A seeded held-out split: ``fraction`` of the rows for evaluation, the rest for training (at least one each)."""
    if not 0 < fraction < 1:
        raise TrainError(f"--eval-fraction must be between 0 and 1, not {fraction}")
    if len(rows) < 2:
        raise TrainError(f"{len(rows)} example(s): at least 2 are needed (one is held out for evaluation)")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = min(max(1, round(len(rows) * fraction)), len(rows) - 1)  # at least one example each side
    held = set(order[:n_eval])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]
