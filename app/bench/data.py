"""Benchmark questions (:class:`Question`, :class:`Dataset`) and the IgakuQA data they started with.

Every question set, whatever its layout (``app.bench.loaders``), becomes a :class:`Dataset` of
:class:`Question`: text and choices in Japanese and/or English, the answer letters, and optional
exam, block, points, category and contraindicated choices. IgakuQA
(github.com/jungokasai/IgakuQA) is read here without copying it. Its layout (unchanged upstream):
``data/YEAR/NNN-X.jsonl`` (Japanese), ``NNN-X_translate.jsonl``
(English) and ``NNN-X_metadata.jsonl``; the three files of a block list the same questions in the
same order. Every file read is hashed into a fingerprint that is stored with each run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

from app.errors import UserError
from app.paths import PROJECT_ROOT, data_dir

DATA_ENV = "JMEDLLM_IGAKUQA_DIR"
SETTINGS_FILE = "settings.json"
SETTINGS_KEY = "igakuqa_dir"
UPSTREAM_URL = "https://github.com/jungokasai/IgakuQA"
EXAMS = {112: 2018, 113: 2019, 114: 2020, 115: 2021, 116: 2022}
YEARS = {year: exam for exam, year in EXAMS.items()}
BLOCKS = "ABCDEF"
REQUIRED_BLOCKS = "BE"  # 必修: the required section
_BLOCK_FILE = re.compile(r"^(\d{3})-([A-F])\.jsonl$")
_REFUSAL = re.compile(r"\b(sorry|cannot be translated|can't be translated|unable to translate)\b", re.I)


_T = TypeVar("_T")
_U = TypeVar("_U")


class DataError(UserError, ValueError):
    """Missing or malformed IgakuQA data; the message names the file and line."""


@dataclass(frozen=True)
class Question:
    """One question in Japanese and/or English (an empty text: not in that language), with its metadata."""

    problem_id: str
    exam: int  # the national exam's number (112 = 2018); 0 for sets that are not an exam
    year: int
    block: str
    text_ja: str
    choices_ja: tuple[str, ...]
    text_en: str
    choices_en: tuple[str, ...]
    answer: tuple[str, ...]  # letters ("a", "c"), or the numeric answer, or ("a or d",)
    points: int
    text_only: bool
    category: str = ""
    kinki: tuple[str, ...] = ()
    human_accuracy: float | None = None
    source: str = ""  # "2022/116-A.jsonl:71"
    explanation: str = ""  # a question bank's explanation of the answer (never shown to the model)

    @property
    def n_choices(self) -> int:
        return len(self.choices_ja or self.choices_en)

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages this question can be asked in."""
        return tuple(lang for lang, text in (("ja", self.text_ja), ("en", self.text_en)) if text.strip())

    @property
    def required(self) -> bool:
        return bool(self.block) and self.block in REQUIRED_BLOCKS

    @property
    def section(self) -> str:
        return "required" if self.required else "general_clinical"

    @property
    def en_refusal(self) -> bool:
        """The English translation is a refusal ("Sorry, ... cannot be translated")."""
        return any(_REFUSAL.search(t) for t in (self.text_en, *self.choices_en))

    def text(self, language: str) -> str:
        return self.text_ja if language == "ja" else self.text_en

    def choices(self, language: str) -> tuple[str, ...]:
        return self.choices_ja if language == "ja" else self.choices_en


@dataclass
class Dataset:
    """All questions read, the folder they came from, and the sha256 over the files read.

    ``name``: the benchmark (a row of the paper-style table: "igakuqa", "medqa", "jmmlu", a
    hospital's set); ``layout``: the loader that read it; ``paper_choices``: the paper's set keeps
    the text-only questions with this many choices (None: every question with choices);
    ``pass_lines``: official pass lines by exam number, where the data gives them.
    """

    root: Path
    questions: list[Question]
    fingerprint: str
    files: list[str] = field(default_factory=list)
    name: str = "igakuqa"
    label: str = "IgakuQA"
    layout: str = "igakuqa"
    paper_choices: int | None = 5
    pass_lines: dict[int, Any] = field(default_factory=dict)  # exam -> app.bench.safety.PassLine

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages at least one question is in."""
        present = {lang for q in self.questions for lang in q.languages}
        return tuple(lang for lang in ("ja", "en") if lang in present)

    def by_id(self) -> dict[str, Question]:
        return {q.problem_id: q for q in self.questions}


def missing_data_message(tried: Path | None = None) -> str:
    where = f" (looked in {tried})" if tried else ""
    return (
        f"IgakuQA data not found{where}. On a machine with internet, download {UPSTREAM_URL}/archive/"
        "refs/heads/main.zip (or git clone it), carry it over, and import it with\n"
        "  jmedllm bench data add IgakuQA-main.zip\n"
        "(or the Benchmark tab's import). A clone can also be used in place: --data DIR, $" + DATA_ENV
        + f', or "{SETTINGS_KEY}" in {data_dir() / SETTINGS_FILE}.'
    )


def configured_igakuqa_dir() -> str | None:
    """The ``igakuqa_dir`` setting, if the settings file has one."""
    try:
        return json.loads((data_dir(create=False) / SETTINGS_FILE).read_text(encoding="utf-8")).get(SETTINGS_KEY)
    except (OSError, ValueError, AttributeError):
        return None


def resolve_data_dir(explicit: str | Path | None = None) -> Path:
    """The IgakuQA clone: ``explicit``, else $JMEDLLM_IGAKUQA_DIR, else the setting, else ../shared.

    Accepts the clone itself or its ``data`` folder; raises :class:`DataError` saying how to get it.
    """
    given = next((value for value in (explicit, os.environ.get(DATA_ENV), configured_igakuqa_dir()) if value), None)
    root = Path(given).expanduser() if given else PROJECT_ROOT.parent / "shared" / "igakuqa"  # beside a checkout
    if (root / "data").is_dir():
        return root
    if root.name == "data" and root.is_dir() and any(root.glob("*/*.jsonl")):
        return root.parent
    # an installed app is no checkout: the place beside its packages means nothing to an administrator
    checkout = (PROJECT_ROOT / "pyproject.toml").is_file()
    raise DataError(missing_data_message(root if given or checkout else None))


def json_object(line: str, where: str) -> dict:
    """One JSONL line as an object; malformed JSON or another kind of value is a :class:`DataError` at ``where``."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: malformed JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise DataError(f"{where}: not a JSON object")
    return row


def parse_jsonl(text: str, name: str) -> list[dict]:
    """The JSON objects of a JSONL text, each with its ``problem_id`` and its line number as ``_line``.

    Blank lines are skipped; a malformed line or one without a ``problem_id`` is an error naming
    ``name`` and the line.
    """
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row = json_object(line, f"{name}:{number}")
        if "problem_id" not in row:
            raise DataError(f"{name}:{number}: no problem_id")
        if not isinstance(row["problem_id"], str):
            raise DataError(f"{name}:{number}: field 'problem_id' is not a string")
        row["_line"] = number
        rows.append(row)
    return rows


def _read_jsonl(path: Path, digest: hashlib._Hash, rel: str) -> list[dict]:
    if not path.exists():
        raise DataError(f"{rel}: file missing")
    raw = path.read_bytes()
    digest.update(rel.encode() + b"\0" + hashlib.sha256(raw).digest())
    return parse_jsonl(decode_utf8(raw, rel), rel)


def decode_utf8(raw: bytes, name: str) -> str:
    """``raw`` as UTF-8 text; invalid bytes are a :class:`DataError` naming ``name`` and the line."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{name}:{line}: not valid UTF-8 (byte {raw[exc.start]:#04x}); "
                        "save the file as UTF-8") from None


def decode_utf8_text(raw: bytes, name: str) -> str:
    """:func:`decode_utf8` without a leading byte-order mark (Excel and Notepad write one)."""
    return decode_utf8(raw, name).removeprefix("\ufeff")


def _strings(row: dict, rel: str, key: str) -> list[str]:
    """Field ``key`` of ``row``, required to be a list of strings."""
    value = _require(row, rel, key, list)
    if not all(isinstance(item, str) for item in value):
        raise DataError(f"{rel}:{row['_line']}: {row['problem_id']} field {key!r} is not a list of strings")
    return value


@overload
def _require(row: dict, rel: str, key: str, kind: type[_T]) -> _T: ...
@overload
def _require(row: dict, rel: str, key: str, kind: tuple[type[_T], type[_U]]) -> _T | _U: ...
def _require(row: dict, rel: str, key: str, kind: type | tuple[type, ...]) -> object:
    if key not in row:
        raise DataError(f"{rel}:{row['_line']}: {row['problem_id']} has no {key!r}")
    value = row[key]
    if not isinstance(value, kind):
        raise DataError(f"{rel}:{row['_line']}: {row['problem_id']} field {key!r} has the wrong type")
    return value


def normalize_letters(values: Iterable[str]) -> tuple[str, ...]:
    """["de"] -> ("d", "e"); full-width "ｂ" -> "b" (the metadata's kinki lists have both)."""
    letters: list[str] = []
    for value in values:
        for char in unicodedata.normalize("NFKC", str(value)).lower():
            if "a" <= char <= "z" and char not in letters:
                letters.append(char)
    return tuple(letters)


def _parse_float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def load_block(root: Path, year_dir: str, exam: int, block: str, digest: hashlib._Hash) -> list[Question]:
    base = f"{year_dir}/{exam}-{block}"
    folder = root / "data"
    ja = _read_jsonl(folder / f"{base}.jsonl", digest, f"{base}.jsonl")
    en = _read_jsonl(folder / f"{base}_translate.jsonl", digest, f"{base}_translate.jsonl")
    meta = _read_jsonl(folder / f"{base}_metadata.jsonl", digest, f"{base}_metadata.jsonl")
    for other, name in ((en, "_translate"), (meta, "_metadata")):
        if len(other) != len(ja):
            raise DataError(f"{base}{name}.jsonl: {len(other)} lines, but {base}.jsonl has {len(ja)}")
    questions = []
    for a, b, c in zip(ja, en, meta, strict=True):
        for row, name in ((b, "_translate"), (c, "_metadata")):
            if row["problem_id"] != a["problem_id"]:
                raise DataError(
                    f"{base}{name}.jsonl:{row['_line']}: problem_id {row['problem_id']!r} does not "
                    f"match {a['problem_id']!r} on line {a['_line']} of {base}.jsonl"
                )
        rel = f"{base}.jsonl"
        choices_ja = _strings(a, rel, "choices")
        choices_en = _strings(b, f"{base}_translate.jsonl", "choices_en")
        if len(choices_en) != len(choices_ja):
            raise DataError(f"{base}_translate.jsonl:{b['_line']}: {a['problem_id']} has "
                            f"{len(choices_en)} choices, the Japanese has {len(choices_ja)}")
        answer = _strings(a, rel, "answer")
        kinki = _strings(c, f"{base}_metadata.jsonl", "kinki") if c.get("kinki") is not None else []
        try:
            points = int(_require(a, rel, "points", (str, int)))
        except ValueError:
            raise DataError(f"{rel}:{a['_line']}: {a['problem_id']} points is not a number") from None
        questions.append(Question(
            problem_id=a["problem_id"], exam=exam, year=EXAMS[exam], block=block,
            text_ja=_require(a, rel, "problem_text", str), choices_ja=tuple(choices_ja),
            text_en=_require(b, f"{base}_translate.jsonl", "problem_text_en", str),
            choices_en=tuple(choices_en),
            answer=tuple(x.strip() for x in answer), points=points,
            text_only=_require(a, rel, "text_only", bool),
            category=str(c.get("category", "")), kinki=normalize_letters(kinki),
            human_accuracy=_parse_float(c.get("human_accuracy")), source=f"{rel}:{a['_line']}",
        ))
    return questions


def load_igakuqa(data_dir_: str | Path | None = None, exams: Sequence[int] | None = None,
                 blocks: str | None = None) -> Dataset:
    """Read (and validate) IgakuQA's chosen years and blocks; by default all of them."""
    root = resolve_data_dir(data_dir_)
    digest = hashlib.sha256()
    questions: list[Question] = []
    files: list[str] = []
    found = False
    for exam, year in sorted(EXAMS.items()):
        if exams and exam not in exams:
            continue
        year_dir = root / "data" / str(year)
        present = {m.group(2) for p in year_dir.glob("*.jsonl") if (m := _BLOCK_FILE.match(p.name))}
        if not present:
            continue
        found = True
        for block in BLOCKS:
            if blocks and block not in blocks:
                continue
            if block not in present:
                raise DataError(f"{year}/{exam}-{block}.jsonl: file missing")
            questions.extend(load_block(root, str(year), exam, block, digest))
            files.extend(f"{year}/{exam}-{block}{s}.jsonl" for s in ("", "_translate", "_metadata"))
    if not found:
        raise DataError(missing_data_message(root / "data"))
    seen: set[str] = set()
    for q in questions:
        if q.problem_id in seen:
            raise DataError(f"{q.source}: duplicate problem_id {q.problem_id}")
        seen.add(q.problem_id)
    return Dataset(root=root, questions=questions, fingerprint=digest.hexdigest(), files=files)
