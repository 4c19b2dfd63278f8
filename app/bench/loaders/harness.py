"""The JMedLLM paper harness's own layout (github.com/stardust-coder/japanese-lm-med-harness), and
the small reading helpers the other upstream loaders share.

Checked against the harness at commit ef9544a (2024-10-02), ``eval_bench.py`` ``prepare_data`` and
``evaluate`` and the README's "Set each dataset as follows": the data lives in ``dataset/``, one
folder per benchmark with one JSONL file per language::

    dataset/MedQA/usmleqa_{ja,en}.jsonl       -> "medqa"
    dataset/MedMCQA/medmcqa_{ja,en}.jsonl     -> "medmcqa"
    dataset/CardioExam/cardioexam_{ja,en}.jsonl -> "cardioexam"

(ClinicalQA25 is open-ended, IgakuQA is read by its own layout, and the MMLU/JMMLU CSVs by
``mmlu.py``.) Each line is an object with ``problem_text`` (the question), ``choices`` (the choice
texts) and ``answer``: the correct choice's TEXT, several joined with "," (``evaluate`` splits it
on ","). ``problem_id`` is read when present; the harness's newest code numbers lines that lack one
(1, 2, ...), and so does this loader. The answer text becomes letters: the choice equal to the
whole answer, else the choices equal to each ","-separated part; anything else is an error.

The harness reads each language's file on its own; here the two files of a folder become one set
whose questions are bilingual where both files have the same ``problem_id`` (their choice counts
and answer letters must then agree), so the paper table's ja and en rows come from one import.
The paper's set is the four-choice questions (``paper_choices`` 4).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from app.bench.data import DataError, Dataset, Question, decode_utf8_text, json_object
from app.bench.loaders import loader

LETTERS = "abcdefgh"
MIN_CHOICES, MAX_CHOICES = 2, len(LETTERS)
LANGUAGES = ("ja", "en")
# folder -> (file stem before _ja/_en, benchmark id, label)
BENCHMARKS = {
    "MedQA": ("usmleqa", "medqa", "MedQA (USMLE)"),
    "MedMCQA": ("medmcqa", "medmcqa", "MedMCQA"),
    "CardioExam": ("cardioexam", "cardioexam", "CardioExam"),
}
SEARCH_DEPTH = 3  # REPO-main/dataset/MedQA


# ---- helpers shared by the upstream loaders ------------------------------------------------

def read_source(path: Path, rel: str, digest: hashlib._Hash) -> str:
    """``path``'s UTF-8 text (a byte-order mark dropped), its bytes hashed into ``digest`` under ``rel``."""
    if not path.is_file():
        raise DataError(f"{rel}: file missing")
    raw = path.read_bytes()
    digest.update(rel.encode() + b"\0" + hashlib.sha256(raw).digest())
    return decode_utf8_text(raw, rel)


def search(path: Path, is_set: Callable[[Path], bool], depth: int) -> list[Path]:
    """The folders at or under ``path`` (at most ``depth`` levels down) that ``is_set`` accepts; a set's
    own subfolders are not searched."""
    if not path.is_dir():
        return []
    if is_set(path):
        return [path]
    if depth == 0:
        return []
    found: list[Path] = []
    for child in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found.extend(search(child, is_set, depth - 1))
    return found


def check_choices(choices: object, where: str) -> tuple[str, ...]:
    """``choices`` as a tuple of 2-8 non-empty strings (stripped), else a :class:`DataError` at ``where``."""
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise DataError(f"{where}: the choices are not a list of texts")
    if not MIN_CHOICES <= len(choices) <= MAX_CHOICES:
        raise DataError(f"{where}: {len(choices)} choices (2 to {MAX_CHOICES} are supported)")
    stripped = tuple(c.strip() for c in choices)
    if not all(stripped):
        raise DataError(f"{where}: choice {LETTERS[[bool(c) for c in stripped].index(False)]} is empty")
    return stripped


def check_unique(questions: Iterable[Question]) -> None:
    """Each problem_id once, else a :class:`DataError` naming both places."""
    seen: dict[str, str] = {}
    for q in questions:
        if q.problem_id in seen:
            raise DataError(f"{q.source}: duplicate id {q.problem_id!r} (first at {seen[q.problem_id]})")
        seen[q.problem_id] = q.source


def plain_question(problem_id: str, language: str, text: str, choices: tuple[str, ...], answer: tuple[str, ...],
                   source: str, category: str = "") -> Question:
    """A text-only question of a set that is not a national exam (1 point, no exam, block or year)."""
    ja = language == "ja"
    return Question(problem_id=problem_id, exam=0, year=0, block="", text_ja=text if ja else "",
                    choices_ja=choices if ja else (), text_en="" if ja else text, choices_en=() if ja else choices,
                    answer=answer, points=1, text_only=True, category=category, source=source)


# ---- the harness layout ---------------------------------------------------------------------

def _files(folder: Path) -> dict[str, Path]:
    stem = BENCHMARKS[folder.name][0] if folder.name in BENCHMARKS else ""
    return {lang: folder / f"{stem}_{lang}.jsonl" for lang in LANGUAGES if (folder / f"{stem}_{lang}.jsonl").is_file()}


def _is_set(folder: Path) -> bool:
    return folder.name in BENCHMARKS and bool(_files(folder))


def find_harness(path: Path) -> list[Path]:
    """The benchmark folders (``MedQA``, ``MedMCQA``, ``CardioExam``) at or under ``path``, or the one
    language file ``path`` is."""
    if path.is_file():
        folder = path.parent
        return [path] if folder.name in BENCHMARKS and path in _files(folder).values() else []
    return search(path, _is_set, SEARCH_DEPTH)


def answer_letters(answer: object, choices: tuple[str, ...], where: str) -> tuple[str, ...]:
    """The harness's answer text as letters: the choice equal to all of it, else one choice per ","-part."""
    if not isinstance(answer, str) or not answer.strip():
        raise DataError(f"{where}: 'answer' is not a choice text")
    text = answer.strip()
    if text in choices:
        return (LETTERS[choices.index(text)],)
    parts = [p.strip() for p in text.split(",")]
    missing = [p for p in parts if p not in choices]
    if missing:
        raise DataError(f"{where}: answer {missing[0]!r} is not one of the choices")
    return tuple(sorted({LETTERS[choices.index(p)] for p in parts}))


def _read_language(path: Path, rel: str, language: str, digest: hashlib._Hash) -> list[Question]:
    questions: list[Question] = []
    for number, line in enumerate(read_source(path, rel, digest).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{rel}:{number}"
        row = json_object(line, where)
        problem_id = row.get("problem_id", len(questions) + 1)
        if not isinstance(problem_id, (str, int)) or isinstance(problem_id, bool) or not str(problem_id).strip():
            raise DataError(f"{where}: 'problem_id' is not a text or number")
        text = row.get("problem_text")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: no 'problem_text'")
        choices = check_choices(row.get("choices"), where)
        answer = answer_letters(row.get("answer"), choices, where)
        questions.append(plain_question(str(problem_id).strip(), language, text.strip(), choices, answer, where))
    if not questions:
        raise DataError(f"{rel}: no questions")
    return questions


def _merge(ja: list[Question], en: list[Question]) -> list[Question]:
    """Japanese and English questions with the same id as one bilingual question, in Japanese order."""
    english = {q.problem_id: q for q in en}
    merged = []
    for q in ja:
        other = english.pop(q.problem_id, None)
        if other is None:
            merged.append(q)
            continue
        if len(other.choices_en) != len(q.choices_ja) or other.answer != q.answer:
            raise DataError(f"{other.source}: {q.problem_id} has {len(other.choices_en)} choices and answer "
                            f"{','.join(other.answer)}, but {q.source} has {len(q.choices_ja)} and "
                            f"{','.join(q.answer)}")
        merged.append(replace(q, text_en=other.text_en, choices_en=other.choices_en,
                              source=f"{q.source} + {other.source}"))
    return merged + [q for q in en if q.problem_id in english]


@loader("harness", "japanese-lm-med-harness dataset/ (MedQA/usmleqa_ja.jsonl, MedMCQA/medmcqa_en.jsonl, ...)",
        find_harness)
def read_harness(path: Path) -> Dataset:
    folder = path.parent if path.is_file() else path
    if folder.name not in BENCHMARKS:
        raise DataError(f"{path}: not a harness benchmark folder ({', '.join(BENCHMARKS)})")
    files = {lang: p for lang, p in _files(folder).items() if not path.is_file() or p == path}
    if not files:
        stem = BENCHMARKS[folder.name][0]
        raise DataError(f"{folder}: neither {stem}_ja.jsonl nor {stem}_en.jsonl")
    _, name, label = BENCHMARKS[folder.name]
    digest = hashlib.sha256()
    read = {lang: _read_language(p, f"{folder.name}/{p.name}", lang, digest) for lang, p in files.items()}
    for questions in read.values():
        check_unique(questions)
    questions = _merge(read.get("ja", []), read.get("en", []))
    return Dataset(root=folder, questions=questions, fingerprint=digest.hexdigest(),
                   files=[f"{folder.name}/{p.name}" for p in files.values()], name=name, label=label,
                   layout="harness", paper_choices=4)
