"""Training examples: question sets and instruction/response JSONL for LoRA, plain text for pre-training.

A question in the documented question-set format (docs/question_sets.md) becomes the benchmark's
own prompt (:func:`app.bench.prompting.build_prompt`, the paper's template: the paper found that a
training prompt unlike the evaluation prompt costs 7B models accuracy) and, as the completion, the
gold choice texts joined with "," -- exactly the paper's gold, which its gestalt scoring compares
with the first line of the answer. A question's explanation, when it has one, follows on the next
lines, so the first line stays the answer. The loss is on the completion only.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.bench.data import DataError, json_object
from app.bench.loaders.question_set import read_questions
from app.bench.prompting import build_prompt
from app.extraction import letter_index
from model_tools.train.errors import TrainError

CORPUS_SUFFIX = ".txt"


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


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise TrainError(f"data file not found: {path}")
    raw = path.read_bytes()
    if not raw.strip():
        raise TrainError(f"{path}: the file is empty")
    return raw


def _first_object(raw: bytes, path: Path) -> dict[str, object]:
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
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


def instruction_examples(raw: bytes, name: str) -> list[Example]:
    """Examples from JSONL lines ``{"instruction": ..., "response": ...}`` (both non-empty strings)."""
    examples = []
    problems = []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
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
    raw = _read(path)
    if path.suffix.lower() == ".jsonl" and "instruction" in _first_object(raw, path):
        examples, kind = instruction_examples(raw, path.name), "instruction"
    elif path.suffix.lower() in (".jsonl", ".csv"):
        examples, kind = question_examples(raw, path.name, language), "question-set"
    else:
        raise TrainError(f"{path.name}: expected a .jsonl or .csv file (question set or instruction/response)")
    if not examples:
        raise TrainError(f"{path}: no training examples")
    rows = [{"prompt": e.prompt, "completion": e.completion} for e in examples]
    return TrainingData(rows, [f"{e.prompt}\n{e.completion}" for e in examples], [path], fingerprint([path]), kind)


def corpus_files(path: Path) -> list[Path]:
    """``path`` itself, or the .txt files under the folder ``path`` in name order."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob(f"*{CORPUS_SUFFIX}") if p.is_file())
        if not files:
            raise TrainError(f"no {CORPUS_SUFFIX} files in {path}")
        return files
    if not path.is_file():
        raise TrainError(f"corpus not found: {path}")
    return [path]


def load_corpus(path: Path) -> TrainingData:
    """The pre-training data: UTF-8 text, one document a non-empty line (packed into sequences later)."""
    files = corpus_files(path)
    texts = []
    for file in files:
        try:
            text = _read(file).decode("utf-8")
        except UnicodeDecodeError as exc:
            line = file.read_bytes()[:exc.start].count(b"\n") + 1
            raise TrainError(f"{file.name}:{line}: not UTF-8 text (save the corpus as UTF-8)") from exc
        texts += [line.strip() for line in text.splitlines() if line.strip()]
    if not texts:
        raise TrainError(f"{path}: the corpus is empty")
    return TrainingData([{"text": t} for t in texts], texts, files, fingerprint(files), "corpus")


def split(rows: list[dict[str, str]], fraction: float, seed: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """A seeded held-out split: ``fraction`` of the rows (at least one) for evaluation, the rest for training."""
    if not 0 < fraction < 1:
        raise TrainError(f"--eval-fraction must be between 0 and 1, not {fraction}")
    if len(rows) < 2:
        raise TrainError(f"{len(rows)} example(s): at least 2 are needed (one is held out for evaluation)")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(rows) * fraction))
    held = set(order[:n_eval])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]
