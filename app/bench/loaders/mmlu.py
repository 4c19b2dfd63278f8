"""MMLU and JMMLU subject CSVs; the paper uses their five medical subjects.

Checked against the upstream files and the readers that use them:

- MMLU (github.com/hendrycks/test; ``evaluate.py`` at 0f23bce reads ``data/test/<subject>_test.csv``
  with ``pd.read_csv(..., header=None)``; ``data/test/medical_genetics_test.csv`` at f112c7a): no
  header, one question a record: question, choice A, B, C, D, answer letter. Quoted fields may hold
  commas and newlines. The paper harness (stardust-coder/japanese-lm-med-harness at ef9544a) reads
  the same files flat from ``dataset/MMLU/<subject>_test.csv``.
- JMMLU (github.com/nlp-waseda/JMMLU at 762cbf1: ``JMMLU/<subject>.csv``, UTF-8 with a byte-order
  mark; the harness reads ``dataset/JMMLU/<subject>.csv`` with ``header=None`` and the columns
  problem_text, choice1-4, correct_choice): the same six columns, in Japanese. Choices often carry
  stray spaces (" 尿管 "); they are stripped here.

A folder's set is the five medical subjects (anatomy, clinical_knowledge, college_medicine,
medical_genetics, professional_medicine; ``category`` = the subject; ids ``<subject>-<n>``, n
counting records from 1); all five must be there, since the paper's row is their sum. One subject
file given alone is a set of its own ("mmlu-anatomy"). English for MMLU, Japanese for JMMLU: the
two are separate sets (JMMLU dropped and rewrote questions, so nothing pairs them).
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

from app.bench.data import DataError, Dataset, Question
from app.bench.loaders import loader
from app.bench.loaders.harness import plain_question, read_source, search

MEDICAL = ("anatomy", "clinical_knowledge", "college_medicine", "medical_genetics", "professional_medicine")
ANSWERS = "ABCD"
SEARCH_DEPTH = 3  # test-master/data/test, JMMLU-main/JMMLU, REPO-main/dataset/MMLU
_SNIFF_BYTES = 65536
_SPLITS = ("_test.csv", "_dev.csv", "_val.csv")  # MMLU's split files, never a JMMLU subject


def _looks_like_subject_csv(path: Path) -> bool:
    """The first record has six fields and ends in a letter A-D (not some other CSV named anatomy.csv)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES).decode("utf-8", errors="ignore").removeprefix("\ufeff")
        first = next(csv.reader(io.StringIO(head)), [])
    except (OSError, csv.Error):
        return False
    return len(first) == 6 and first[5].strip() in ANSWERS and first[5].strip() != ""


def _records(text: str, rel: str) -> list[tuple[int, list[str]]]:
    """(first line, fields) of each non-blank CSV record of ``text``."""
    reader = csv.reader(io.StringIO(text))
    records = []
    line = 1
    try:
        for fields in reader:
            start, line = line, reader.line_num + 1
            if any(f.strip() for f in fields):
                records.append((start, fields))
    except csv.Error as exc:
        raise DataError(f"{rel}:{reader.line_num}: malformed CSV ({exc})") from None
    return records


def read_subject(path: Path, rel: str, subject: str, language: str, digest: hashlib._Hash) -> list[Question]:
    """One subject file's questions (no header; question, A, B, C, D, answer letter)."""
    questions = []
    for number, (line, fields) in enumerate(_records(read_source(path, rel, digest), rel), start=1):
        where = f"{rel}:{line}"
        if len(fields) != 6:
            raise DataError(f"{where}: {len(fields)} fields; expected 6 (question, A, B, C, D, answer)")
        text, *choices, answer = (f.strip() for f in fields)
        if not text:
            raise DataError(f"{where}: the question is empty")
        if not all(choices):
            raise DataError(f"{where}: choice {ANSWERS[[bool(c) for c in choices].index(False)]} is empty")
        if len(answer) != 1 or answer.upper() not in ANSWERS:
            raise DataError(f"{where}: answer {answer!r} is not one of A, B, C, D")
        questions.append(plain_question(f"{subject}-{number}", language, text, tuple(choices), (answer.lower(),),
                                        where, category=subject))
    if not questions:
        raise DataError(f"{rel}: no questions")
    return questions


class _Layout:
    """MMLU (``<subject>_test.csv``, English) or JMMLU (``<subject>.csv``, Japanese)."""

    def __init__(self, name: str, label: str, suffix: str, language: str) -> None:
        self.name, self.label, self.suffix, self.language = name, label, suffix, language

    def subject(self, path: Path) -> str | None:
        if not path.name.endswith(self.suffix) or (self.suffix == ".csv" and path.name.endswith(_SPLITS)):
            return None
        return path.name[: -len(self.suffix)]

    def medical_files(self, folder: Path) -> dict[str, Path]:
        files = {s: folder / f"{s}{self.suffix}" for s in MEDICAL}
        return {s: p for s, p in files.items() if p.is_file() and _looks_like_subject_csv(p)}

    def find(self, path: Path) -> list[Path]:
        if path.is_file():
            return [path] if self.subject(path) and _looks_like_subject_csv(path) else []
        return search(path, lambda folder: bool(self.medical_files(folder)), SEARCH_DEPTH)

    def load(self, path: Path) -> Dataset:
        digest = hashlib.sha256()
        if path.is_file():
            subject = self.subject(path)
            if subject is None:
                raise DataError(f"{path}: not a {self.label} subject file (<subject>{self.suffix})")
            questions = read_subject(path, path.name, subject, self.language, digest)
            return Dataset(root=path.parent, questions=questions, fingerprint=digest.hexdigest(), files=[path.name],
                           name=f"{self.name}-{subject.replace('_', '-')}", label=f"{self.label} {subject}",
                           layout=self.name, paper_choices=4)
        files = self.medical_files(path)
        missing = [f"{s}{self.suffix}" for s in MEDICAL if s not in files]
        if missing:
            raise DataError(f"{path}: the paper's {self.label} set is the five medical subjects; missing "
                            f"{', '.join(missing)}")
        questions = [q for s, p in files.items() for q in read_subject(p, p.name, s, self.language, digest)]
        return Dataset(root=path, questions=questions, fingerprint=digest.hexdigest(),
                       files=[p.name for p in files.values()], name=self.name, label=f"{self.label} (medical)",
                       layout=self.name, paper_choices=4)


MMLU = _Layout("mmlu", "MMLU", "_test.csv", "en")
JMMLU = _Layout("jmmlu", "JMMLU", ".csv", "ja")


@loader("mmlu", "MMLU subject CSVs (data/test/<subject>_test.csv; the five medical subjects)", MMLU.find)
def read_mmlu(path: Path) -> Dataset:
    return MMLU.load(path)


@loader("jmmlu", "JMMLU subject CSVs (JMMLU/<subject>.csv; the five medical subjects)", JMMLU.find)
def read_jmmlu(path: Path) -> Dataset:
    return JMMLU.load(path)
