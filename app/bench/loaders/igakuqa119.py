"""Newer national exams: IgakuQA119 (the 119th, 2025) and JMLE2026-Bench (the 120th, 2026) files.

IgakuQA119, checked against github.com/docto-rin/IgakuQA119 at 2d94239 and its copy
github.com/naoto-iwase/IgakuQA119 at 7480d90 (the same question files): ``questions/119X_json.json``
for blocks A-F, each a JSON array of ``{"number": "119A1", "question", "choices": ["a. ...", ...],
"has_image"}``, and the answers in ``correct_answers.csv`` (header ``問題番号,解答``; letters such as
"ce", or the number of a numeric-entry question), under ``results/`` (docto-rin) or ``questions/``
(naoto-iwase). Points follow upstream's ``grade.py``: questions 26-50 of the required blocks B and
E are worth 3, every other question 1. The choices carry their labels ("a. "), removed here; a label
out of order is an error, except in five questions garbled upstream, which are left out while they
stay garbled: 119A22 and 119C19 (the OCR merged choice c into another one: labels a, b, d, e),
119E45 and 119E48 (the choices are inside the question text; ``choices`` is empty) and 119C18
(its ``question`` is empty in docto-rin's copy; naoto-iwase's has it). Upstream
accepts "a" or "c" for 119E28 (answer "ac" in the CSV); stored as given.

JMLE2026-Bench, checked against github.com/naoto-iwase/JMLE2026-Bench at 76c4b29
(``jmle2026_dataset.json`` and ``benchmark.py``): one JSON array of ``{"question_id": "120A-1",
"block", "number", "question_type": "multiple_choice" | "calculation", "question_text",
"requires_image", "num_choices_to_select", "answer": ["c", "e"], "serial_group"}``. The choices are
the last lines of ``question_text`` ("a　text", or a table row "| a | ... |"); the stem is what
precedes them, less its leading question number; a serial question's shared case
(``serial_group.context_text``) goes before it, as ``benchmark.py`` does. Calculation questions
have no choices and their numeric answer. Points: the same rule (``benchmark.py`` ``question_points``).

Ids follow IgakuQA's style ("119A1", "120A1"). Neither repository's data holds a pass line (the
JMLE2026 README quotes the 119th exam's as a reference), so ``pass_lines`` stays empty.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path

from app.bench.data import DataError, Dataset, Question
from app.bench.loaders import loader
from app.bench.loaders.harness import LETTERS, check_unique, read_source, search
from app.bench.sets import EXAM_YEAR_OFFSET

BLOCKS = "ABCDEF"
REQUIRED_BLOCKS = "BE"
ANSWERS_FILE = "correct_answers.csv"
ANSWER_HEADER = ["問題番号", "解答"]
KNOWN_GARBLED = {"119A22", "119C18", "119C19", "119E45", "119E48"}  # left out while upstream's OCR defect is there
_BLOCK_FILE = re.compile(r"^(\d{3})([A-F])_json\.json$")
_LABEL = re.compile(r"^\s*([a-z])\s*[.．]\s*")
_NUMERIC = re.compile(r"^-?\d+(\.\d+)?$")
_JMLE_FILE = re.compile(r"^jmle(\d{4})_dataset\.json$")
_JMLE_ID = re.compile(r"^(\d{3})([A-F])-(\d+)$")
_CHOICE_LINE = re.compile(r"^[ \u3000]*([a-h])[ \u3000]+(\S.*?)[ \u3000]*$")
_CHOICE_ROW = re.compile(r"^\|\s*([a-h])\s*\|(.*)\|\s*$")


def exam_points(block: str, number: int) -> int:
    """The official points: 3 for questions 26-50 of the required blocks, else 1."""
    return 3 if block in REQUIRED_BLOCKS and 26 <= number <= 50 else 1


def json_array(text: str, rel: str) -> list[tuple[int, object]]:
    """(line, item) for each item of the JSON array ``text``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{rel}:{exc.lineno}: malformed JSON ({exc.msg})") from None
    if not isinstance(data, list):
        raise DataError(f"{rel}: not a JSON array")
    decoder = json.JSONDecoder()
    items: list[tuple[int, object]] = []
    position = text.index("[") + 1
    line = text.count("\n", 0, position) + 1
    for _ in data:
        start = position
        while text[position] in " \t\r\n,":
            position += 1
        line += text.count("\n", start, position)
        item, end = decoder.raw_decode(text, position)
        items.append((line, item))
        line += text.count("\n", position, end)
        position = end
    return items


# ---- IgakuQA119 -----------------------------------------------------------------------------

def _block_files(folder: Path) -> dict[tuple[int, str], Path]:
    questions = folder / "questions"
    if not questions.is_dir():
        return {}
    return {(int(m.group(1)), m.group(2)): p for p in sorted(questions.iterdir())
            if (m := _BLOCK_FILE.match(p.name))}


def find_igakuqa119(path: Path) -> list[Path]:
    """The clone at or one level under ``path`` (or whose ``questions`` folder ``path`` is)."""
    if path.is_dir() and path.name == "questions" and _block_files(path.parent):
        return [path.parent]
    return search(path, lambda folder: bool(_block_files(folder)), 1)


def read_answers(folder: Path, digest: hashlib._Hash) -> tuple[str, dict[str, tuple[str, int]]]:
    """The answers file's name and {problem id: (answer, line)}."""
    for rel in (f"questions/{ANSWERS_FILE}", f"results/{ANSWERS_FILE}"):
        if (folder / rel).is_file():
            break
    else:
        raise DataError(f"{folder}: no {ANSWERS_FILE} in questions/ or results/ (the answers to the questions)")
    reader = csv.reader(io.StringIO(read_source(folder / rel, rel, digest)))
    answers: dict[str, tuple[str, int]] = {}
    try:
        header = next(reader, [])
        if [h.strip() for h in header] != ANSWER_HEADER:
            raise DataError(f"{rel}:1: the header is {','.join(header)!r}; expected {','.join(ANSWER_HEADER)}")
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != 2 or not all(f.strip() for f in fields):
                raise DataError(f"{rel}:{reader.line_num}: expected a problem number and its answer")
            number, answer = (f.strip() for f in fields)
            if number in answers:
                raise DataError(f"{rel}:{reader.line_num}: {number} answered twice (also line {answers[number][1]})")
            answers[number] = (answer.lower(), reader.line_num)
    except csv.Error as exc:
        raise DataError(f"{rel}:{reader.line_num}: malformed CSV ({exc})") from None
    return rel, answers


def _labelled_choices(choices: object, where: str) -> tuple[str, ...]:
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise DataError(f"{where}: the choices are not a list of texts")
    if len(choices) == 1 or len(choices) > len(LETTERS):
        raise DataError(f"{where}: {len(choices)} choices (2 to {len(LETTERS)}, or none for a numeric answer)")
    texts = []
    for letter, choice in zip(LETTERS, choices, strict=False):
        match = _LABEL.match(choice)
        if not match or match.group(1) != letter or not choice[match.end():].strip():
            raise DataError(f"{where}: choice {letter} is {choice!r}; expected '{letter}. text'")
        texts.append(choice[match.end():].strip())
    return tuple(texts)


def _answer(answer: str, n_choices: int, where: str) -> tuple[str, ...]:
    if n_choices == 0:
        if not _NUMERIC.match(answer):
            raise DataError(f"{where}: no choices, but the answer {answer!r} is not a number")
        return (answer,)
    if not answer.isalpha() or any(ch not in LETTERS[:n_choices] for ch in answer) or len(set(answer)) < len(answer):
        raise DataError(f"{where}: answer {answer!r} is not letters among its {n_choices} choices")
    return tuple(answer)


def _block_questions(path: Path, rel: str, exam: int, block: str, answers: dict[str, tuple[str, int]],
                     answers_rel: str, digest: hashlib._Hash) -> list[Question]:
    pattern = re.compile(rf"^{exam}{block}(\d+)$")
    questions = []
    for line, item in json_array(read_source(path, rel, digest), rel):
        where = f"{rel}:{line}"
        if not isinstance(item, dict):
            raise DataError(f"{where}: not a JSON object")
        number = item.get("number")
        match = pattern.match(number) if isinstance(number, str) else None
        if not match:
            raise DataError(f"{where}: 'number' {number!r} is not a question of {exam}{block} ({exam}{block}1, ...)")
        where = f"{where}: {number}"
        if not isinstance(item.get("has_image"), bool):
            raise DataError(f"{where}: 'has_image' is not true or false")
        if number not in answers:
            raise DataError(f"{where}: no answer in {answers_rel}")
        text = item.get("question")
        try:
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{where}: no 'question'")
            choices = _labelled_choices(item.get("choices"), where)
            answer = _answer(answers[number][0], len(choices), f"{answers_rel}:{answers[number][1]}: {number}")
        except DataError:
            if number in KNOWN_GARBLED:
                continue
            raise
        questions.append(Question(
            problem_id=number, exam=exam, year=exam + EXAM_YEAR_OFFSET, block=block, text_ja=str(text).strip(),
            choices_ja=choices, text_en="", choices_en=(), answer=answer,
            points=exam_points(block, int(match.group(1))), text_only=not item["has_image"], source=f"{rel}:{line}"))
    return questions


@loader("igakuqa119", "IgakuQA119 (questions/119A_json.json ... and correct_answers.csv)", find_igakuqa119)
def read_igakuqa119(path: Path) -> Dataset:
    files = _block_files(path)
    if not files:
        raise DataError(f"{path}: no questions/NNNX_json.json files")
    exams = sorted({exam for exam, _ in files})
    for exam in exams:
        missing = [b for b in BLOCKS if (exam, b) not in files]
        if missing:
            raise DataError(f"{path}/questions: {exam}{missing[0]}_json.json missing (blocks A-F are needed)")
    digest = hashlib.sha256()
    answers_rel, answers = read_answers(path, digest)
    questions = [q for (exam, block), p in sorted(files.items())
                 for q in _block_questions(p, f"questions/{p.name}", exam, block, answers, answers_rel, digest)]
    check_unique(questions)
    name = "igakuqa" + "-".join(str(e) for e in exams)
    return Dataset(root=path, questions=questions, fingerprint=digest.hexdigest(),
                   files=[answers_rel, *(f"questions/{p.name}" for p in files.values())], name=name,
                   label=f"IgakuQA{'/'.join(str(e) for e in exams)}", layout="igakuqa119", paper_choices=5)


# ---- JMLE2026-Bench -------------------------------------------------------------------------

def find_jmle(path: Path) -> list[Path]:
    """The ``jmleYYYY_dataset.json`` file ``path`` is, or those in ``path`` or one folder down."""
    if path.is_file():
        return [path] if _JMLE_FILE.match(path.name) else []
    folders = search(path, lambda folder: any(_JMLE_FILE.match(p.name) for p in folder.iterdir()), 1)
    return [p for folder in folders for p in sorted(folder.iterdir()) if _JMLE_FILE.match(p.name)]


def split_choices(text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """(stem, ((label, choice), ...)): the trailing lines labelled a, b, ... (blank lines between
    them allowed), as plain lines or table rows, and what precedes them."""
    lines = text.split("\n")
    found: list[tuple[int, str, str]] = []
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if not line.strip():
            continue
        row = _CHOICE_ROW.match(line)
        plain = _CHOICE_LINE.match(line)
        if row:
            found.append((index, row.group(1), " | ".join(c.strip() for c in row.group(2).split("|"))))
        elif plain:
            found.append((index, plain.group(1), plain.group(2)))
        else:
            break
    found.reverse()
    if not found:
        return text.strip(), ()
    return "\n".join(lines[: found[0][0]]).strip(), tuple((label, choice) for _, label, choice in found)


def _jmle_question(item: object, source: str) -> Question:
    where = source
    if not isinstance(item, dict):
        raise DataError(f"{where}: not a JSON object")
    qid = item.get("question_id")
    match = _JMLE_ID.match(qid) if isinstance(qid, str) else None
    if not match:
        raise DataError(f"{where}: 'question_id' {qid!r} is not like 120A-1")
    where = f"{where}: {qid}"
    exam, block, number = int(match.group(1)), match.group(2), int(match.group(3))
    if item.get("block") != block or item.get("number") != number:
        raise DataError(f"{where}: 'block' {item.get('block')!r} or 'number' {item.get('number')!r} disagrees "
                        "with the question_id")
    text, kind, answer = item.get("question_text"), item.get("question_type"), item.get("answer")
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: no 'question_text'")
    if not isinstance(item.get("requires_image"), bool):
        raise DataError(f"{where}: 'requires_image' is not true or false")
    if not isinstance(answer, list) or not answer or not all(isinstance(a, str) and a.strip() for a in answer):
        raise DataError(f"{where}: 'answer' is not a list of answers")
    stem, labelled = split_choices(text)
    choices: tuple[str, ...] = ()
    if kind == "calculation":
        if len(answer) != 1 or not _NUMERIC.match(answer[0].strip()):
            raise DataError(f"{where}: a calculation question's answer must be one number, not {answer!r}")
        stem, letters = text.strip(), (answer[0].strip(),)
    elif kind == "multiple_choice":
        labels = "".join(label for label, _ in labelled)
        if len(labels) < 2 or labels != LETTERS[: len(labels)]:
            raise DataError(f"{where}: the choices at the end of 'question_text' are labelled {labels or 'nothing'!r}; "
                            "expected lines 'a　...', 'b　...'")
        choices = tuple(choice for _, choice in labelled)
        letters = tuple(a.strip().lower() for a in answer)
        if any(a not in labels for a in letters) or len(set(letters)) < len(letters):
            raise DataError(f"{where}: answer {answer!r} is not letters among its choices {labels}")
        if item.get("num_choices_to_select") != len(letters):
            raise DataError(f"{where}: {len(letters)} answers, but 'num_choices_to_select' is "
                            f"{item.get('num_choices_to_select')!r}")
    else:
        raise DataError(f"{where}: 'question_type' {kind!r} is neither multiple_choice nor calculation")
    stem = re.sub(rf"^{number}[ \u3000]+", "", stem)
    group = item.get("serial_group")
    if group is not None:
        context = group.get("context_text") if isinstance(group, dict) else None
        if not isinstance(context, str) or not context.strip():
            raise DataError(f"{where}: 'serial_group' has no 'context_text'")
        stem = f"{context.strip()}\n\n{stem}"
    return Question(problem_id=f"{exam}{block}{number}", exam=exam, year=exam + EXAM_YEAR_OFFSET, block=block,
                    text_ja=stem, choices_ja=choices, text_en="", choices_en=(), answer=letters,
                    points=exam_points(block, number), text_only=not item["requires_image"], source=source)


@loader("jmle-bench", "JMLE2026-Bench style files (jmle2026_dataset.json)", find_jmle)
def read_jmle(path: Path) -> Dataset:
    match = _JMLE_FILE.match(path.name)
    if not path.is_file() or not match:
        raise DataError(f"{path}: not a jmleYYYY_dataset.json file")
    digest = hashlib.sha256()
    items = json_array(read_source(path, path.name, digest), path.name)
    questions = [_jmle_question(item, f"{path.name}:{line}") for line, item in items]
    if not questions:
        raise DataError(f"{path.name}: no questions")
    check_unique(questions)
    return Dataset(root=path.parent, questions=questions, fingerprint=digest.hexdigest(), files=[path.name],
                   name=f"jmle{match.group(1)}", label=f"JMLE{match.group(1)}-Bench", layout="jmle-bench",
                   paper_choices=5)
