"""The documented question-set format (docs/question_sets.md): a hospital's own question bank as JSONL or CSV.

One file is one set. JSONL: one object a line with ``id``, ``question``, ``choices`` (2-8),
``answer`` (letters) and the optional ``language``, ``translation`` ({"question", "choices"} in the
other language), ``category``, ``points``, ``contraindicated`` (letters) and ``explanation``. CSV
(UTF-8; Excel's byte-order mark is fine, Shift_JIS is refused with a message saying how to save
as UTF-8): a header row naming the same fields, the choices as ``choice_a`` ... ``choice_h`` and
the translation as ``translation_question`` and ``translation_choice_a`` ... Every problem in the
file is collected and reported together, each naming the file and its line (CSV: its spreadsheet
row). The set's name is a slug of the file name, its fingerprint the sha256 of the file's bytes.
The loader only reads: nothing is written and nothing leaves the machine.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from app.bench.data import DataError, Dataset, Question, decode_utf8_text
from app.bench.loaders import loader

LAYOUT = "question-set"
SUFFIXES = (".jsonl", ".csv")
LETTERS = "abcdefgh"
MIN_CHOICES, MAX_CHOICES = 2, len(LETTERS)
MAX_LISTED = 30  # problems listed in one error; the rest are counted
EMPTY_FILE = "the file is empty"  # also in the importer's message about an empty file
UNCLOSED_QUOTE = ('a quote (") opened in this row is never closed, which would read the rows after it into one '
                  'cell; close it (a quote inside a cell is written "")')
FIELDS = ("id", "question", "choices", "answer", "language", "translation", "category", "points",
          "contraindicated", "explanation")
CHOICE_COLUMNS = tuple(f"choice_{x}" for x in LETTERS)
TRANSLATION_COLUMNS = ("translation_question", *(f"translation_choice_{x}" for x in LETTERS))
CSV_COLUMNS = ("id", "question", *CHOICE_COLUMNS, "answer", "language", *TRANSLATION_COLUMNS, "category",
               "points", "contraindicated", "explanation")
CSV_REQUIRED = ("id", "question", "choice_a", "choice_b", "answer")
_CSV_SCALARS = ("id", "question", "answer", "language", "category", "points", "contraindicated", "explanation")
_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_SNIFF_BYTES = 65536
_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]")
_OTHER_SEPARATORS = re.compile(r"[;\t]")  # a header of one cell holding these: not a comma-separated file
_LETTER_SEPARATORS = re.compile(r"[\s,、，;；/]+")


class _Problems:
    """The problems found in one file, raised together as one :class:`DataError`, and the ids seen so far."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.messages: list[str] = []
        self.ids: dict[str, str] = {}  # id -> where it first appeared

    def add(self, where: str, message: str) -> None:
        self.messages.append(f"{where}: {message}")

    def raise_if_any(self) -> None:
        if not self.messages:
            return
        count = len(self.messages)
        if count == 1:
            raise DataError(self.messages[0])
        listed = "\n".join(f"  {m}" for m in self.messages[:MAX_LISTED])
        more = f"\n  ... and {count - MAX_LISTED} more" if count > MAX_LISTED else ""
        raise DataError(f"{self.name}: {count} problems; fix them all and import again:\n{listed}{more}")


def set_name(stem: str) -> str:
    """The set's name (a benchmark id, ``[a-z0-9._-]``) from its file name; a name with no ASCII
    letters or digits ("研修医試験.csv") becomes "set-" and a short hash of it."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", unicodedata.normalize("NFKC", stem).lower())
    slug = re.sub(r"-{2,}", "-", slug).strip("-._")[:64].rstrip("-._")
    return slug if slug else "set-" + hashlib.sha256(stem.encode("utf-8")).hexdigest()[:8]


def detect_language(text: str) -> str:
    """"ja" when ``text`` has kana or kanji, else "en"."""
    return "ja" if _JAPANESE.search(text) else "en"


def _decode(raw: bytes, name: str) -> str:
    """UTF-8 text without a leading byte-order mark; Shift_JIS (Excel's default CSV) and UTF-16 (its
    "Unicode text") get a hint."""
    try:
        return decode_utf8_text(raw, name)
    except DataError as exc:
        if raw.startswith(_UTF16_BOMS):
            raise DataError(f"{exc}. It is UTF-16 (Excel's \"Unicode テキスト\", Windows PowerShell's default): "
                            "save it as UTF-8 (Excel: \"CSV UTF-8 (コンマ区切り)\")") from None
        try:
            japanese = bool(_JAPANESE.search(raw.decode("cp932")))
        except UnicodeDecodeError:
            japanese = False
        if not japanese:
            raise
        raise DataError(f"{exc}. It looks like Shift_JIS, which Excel writes for \"CSV (コンマ区切り)\": "
                        "save it as \"CSV UTF-8 (コンマ区切り)\" instead") from None


def _text(value: object, what: str, where: str, problems: _Problems) -> str | None:
    """``value`` as a non-empty, stripped string; else a problem and None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        problems.add(where, f"{what} is empty")
        return None
    if not isinstance(value, str):
        problems.add(where, f"{what} is not text")
        return None
    return value.strip()


def _choices(value: object, what: str, where: str, problems: _Problems) -> tuple[str, ...] | None:
    """``value`` as 2-8 non-empty texts; ``what``: "choice" or "translation choice"."""
    if not isinstance(value, list):
        problems.add(where, f"{what}s are not a list of texts")
        return None
    if not value:
        problems.add(where, f"no {what}s")
        return None
    if not MIN_CHOICES <= len(value) <= MAX_CHOICES:
        plural = what if len(value) == 1 else f"{what}s"
        problems.add(where, f"{len(value)} {plural}; a question needs {MIN_CHOICES} to {MAX_CHOICES}")
        return None
    choices = [_text(item, f"{what} {LETTERS[i]}", where, problems) for i, item in enumerate(value)]
    return tuple(c for c in choices if c is not None) if None not in choices else None


def _letters(value: object, what: str, n_choices: int, where: str, problems: _Problems) -> tuple[str, ...] | None:
    """Choice letters from "a", "a,c", "A, C", "ａ，ｃ" or ["a", "c"], each within the ``n_choices``
    (none given: an empty tuple); None after a problem."""
    if value is None:
        return ()
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        value = ",".join(value)
    if not isinstance(value, str):
        problems.add(where, f"{what} is not letters (write \"a\" or \"a,c\")")
        return None
    letters: set[str] = set()
    ok = True
    for token in _LETTER_SEPARATORS.split(unicodedata.normalize("NFKC", value).lower()):
        if not token:
            continue
        if len(token) != 1 or token not in LETTERS:
            problems.add(where, f"{what} {token!r} is not a choice letter (write letters a-h separated by "
                                "commas, e.g. \"a,c\")")
            ok = False
        elif LETTERS.index(token) >= n_choices:
            last = LETTERS[n_choices - 1]
            problems.add(where, f"{what} letter {token!r} is beyond the {n_choices} choices (a-{last})")
            ok = False
        else:
            letters.add(token)
    return tuple(sorted(letters)) if ok else None


def _points(value: object, where: str, problems: _Problems) -> int:
    if value is None:
        return 1
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    problems.add(where, f"points {value!r} is not a whole number (0 or more)")
    return 1


def _id(value: object, where: str, problems: _Problems) -> str | None:
    """The record's id (text, or a whole number in JSONL), unique in the file."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    problem_id = _text(value, "id", where, problems)
    if problem_id is not None:
        if problem_id in problems.ids:
            first = problems.ids[problem_id]
            problems.add(f"{where} ({problem_id})", f"duplicate id {problem_id!r} (first at {first})")
        else:
            problems.ids[problem_id] = where
    return problem_id


def _question(row: dict, where: str, problems: _Problems) -> Question | None:
    """One validated question from a record in the JSONL shape; its problems are added, not raised."""
    before = len(problems.messages)
    problem_id = _id(row.get("id"), where, problems)
    at = f"{where} ({problem_id})" if problem_id else where
    unknown = [key for key in row if key not in FIELDS]
    if unknown:
        problems.add(at, f"unknown field {', '.join(map(repr, unknown))} (known fields: {', '.join(FIELDS)})")
    text = _text(row.get("question"), "question", at, problems)
    choices = _choices(row.get("choices", []), "choice", at, problems)
    answer = kinki = None
    if choices is not None:
        answer = _letters(row.get("answer"), "answer", len(choices), at, problems)
        kinki = _letters(row.get("contraindicated", ""), "contraindicated", len(choices), at, problems)
        if answer == ():
            problems.add(at, "no answer")
        if answer and kinki and set(answer) & set(kinki):
            problems.add(at, f"choice {', '.join(sorted(set(answer) & set(kinki)))} is both the answer and "
                             "contraindicated")
    language = row.get("language")
    if isinstance(language, str):
        language = language.strip().lower() or None
    if language is not None and language not in ("ja", "en"):
        problems.add(at, f"language {language!r} is neither \"ja\" nor \"en\"")
    translation = _translation(row["translation"], choices, at, problems) if "translation" in row else ("", ())
    for key in ("category", "explanation"):
        if not isinstance(row.get(key, ""), str):
            problems.add(at, f"{key} is not text")
    points = _points(row.get("points"), at, problems)
    if (len(problems.messages) > before or problem_id is None or text is None or choices is None or not answer
            or kinki is None or translation is None):
        return None
    given = (text, choices)
    ja, en = (given, translation) if (language or detect_language(text)) == "ja" else (translation, given)
    return Question(problem_id=problem_id, exam=0, year=0, block="", text_ja=ja[0], choices_ja=ja[1],
                    text_en=en[0], choices_en=en[1], answer=answer, points=points, text_only=True,
                    category=row.get("category", "").strip(), kinki=kinki, source=where,
                    explanation=row.get("explanation", "").strip())


def _translation(value: object, choices: tuple[str, ...] | None, where: str,
                 problems: _Problems) -> tuple[str, tuple[str, ...]] | None:
    """The translation's question and choices (as many as the question's); None after a problem."""
    if not isinstance(value, dict):
        problems.add(where, "translation is not an object with \"question\" and \"choices\"")
        return None
    unknown = [key for key in value if key not in ("question", "choices")]
    if unknown:
        problems.add(where, f"unknown translation field {', '.join(map(repr, unknown))} (known: question, choices)")
    text = _text(value.get("question"), "translation question", where, problems)
    other = _choices(value.get("choices", []), "translation choice", where, problems)
    if other is not None and choices is not None and len(other) != len(choices):
        problems.add(where, f"the translation has {len(other)} choices, the question {len(choices)}")
        return None
    return (text, other) if text is not None and other is not None and not unknown else None


def _jsonl_questions(text: str, name: str, problems: _Problems) -> list[Question]:
    questions = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.add(where, f"malformed JSON ({exc.msg})")
            continue
        if not isinstance(row, dict):
            problems.add(where, f"not a JSON object (found {type(row).__name__})")
            continue
        question = _question(row, where, problems)
        if question is not None:
            questions.append(question)
    return questions


def _csv_choices(values: dict[str, str], columns: tuple[str, ...], where: str,
                 problems: _Problems) -> list[str] | None:
    """The filled cells of ``columns``, which must not skip one (choice_c empty, choice_d filled: a problem, None)."""
    filled = [column for column in columns if values.get(column)]
    if not filled:
        return []
    last = columns.index(filled[-1])
    gaps = [column for column in columns[:last] if not values.get(column)]
    if gaps:
        problems.add(where, f"{', '.join(gaps)} empty but {filled[-1]} filled; fill the choices from {columns[0]} "
                            "on without gaps")
        return None
    return [values[column] for column in filled]


def _csv_record(values: dict[str, str], where: str, problems: _Problems) -> dict | None:
    """A CSV row's filled cells in the JSONL shape (the choice columns as lists); None after a gap in the choices."""
    row: dict[str, object] = {key: values[key] for key in _CSV_SCALARS if values.get(key)}
    choices = _csv_choices(values, CHOICE_COLUMNS, where, problems)
    other = _csv_choices(values, TRANSLATION_COLUMNS[1:], where, problems)
    if choices is None or other is None:
        return None
    if choices:
        row["choices"] = choices
    if values.get("translation_question") or other:
        row["translation"] = {"question": values.get("translation_question", ""), "choices": other}
    return row


def _csv_header(cells: list[str] | None, name: str, problems: _Problems) -> list[str] | None:
    """The header's column names (lower case; "" for an unnamed column), or None after a problem."""
    where = f"{name} row 1"
    if cells is None or not any(cell.strip() for cell in cells):
        problems.add(where, "no header row (the file is empty)" if cells is None else "the header row is empty")
        return None
    header = [cell.strip().lower() for cell in cells]
    if len(header) == 1 and _OTHER_SEPARATORS.search(header[0]):
        problems.add(where, "the columns are separated by semicolons or tabs, not commas; save it as "
                            "\"CSV UTF-8 (コンマ区切り)\"")
        return None
    unknown = [c for c in header if c and c not in CSV_COLUMNS]
    missing = [c for c in CSV_REQUIRED if c not in header]
    doubled = sorted({c for c in header if c and header.count(c) > 1})
    if unknown:
        problems.add(where, f"unknown column {', '.join(map(repr, unknown))} (known columns: {', '.join(CSV_COLUMNS)})")
    if missing:
        problems.add(where, f"no {', '.join(missing)} column in the header")
    if doubled:
        problems.add(where, f"column {', '.join(doubled)} appears more than once in the header")
    return None if unknown or missing or doubled else header


def _ends_in_quotes(text: str) -> bool:
    """Whether the CSV ``text`` ends inside a quoted cell, read as :mod:`csv` reads it (a quote opens a cell
    only as its first character; inside one, "" is a quote and a single " closes it)."""
    state = "start"  # of a cell; "cell": in an unquoted one; "quoted": inside quotes; "quote": just after one there
    for char in text:
        if state == "quoted":
            state = "quote" if char == '"' else state
        elif state == "quote" and char == '"':
            state = "quoted"
        elif char in ",\r\n":
            state = "start"
        else:
            state = "quoted" if state == "start" and char == '"' else "cell"
    return state == "quoted"


def _csv_rows(text: str, name: str, problems: _Problems) -> Iterator[tuple[int, list[str]]]:
    """(spreadsheet row, cells) of each row, the header first as row 1 (a cell may span lines). A quote that
    is never closed would read the rest of the file into its cell: it is a problem of its row, and reading
    goes on at the line after the one that row began on."""
    lines = io.StringIO(text, newline="").readlines()
    start, number = 0, 1
    while start < len(lines):
        reader = csv.reader(lines[start:])
        read = 0  # lines of lines[start:] before the row being read
        try:
            for cells in reader:
                if reader.line_num - read > 1 and reader.line_num == len(lines) - start \
                        and _ends_in_quotes("".join(lines[start + read:])):
                    break
                yield number, cells
                number, read = number + 1, reader.line_num
            else:
                return
        except csv.Error:  # a cell over csv's size limit: a quote left open in a long file, or a real error
            if not _ends_in_quotes("".join(lines[start + read:])):
                raise
        problems.add(f"{name} row {number}", UNCLOSED_QUOTE)
        start, number = start + read + 1, number + 1


def _csv_error(exc: csv.Error) -> str:
    """What a CSV error means to whoever wrote the file."""
    limit = csv.field_size_limit()
    if "field larger than field limit" in str(exc):
        return f"a cell longer than {limit:,} characters; no question or choice is that long: check this row"
    return f"unreadable CSV ({exc})"


def _csv_questions(text: str, name: str, problems: _Problems) -> list[Question]:
    """Rows are numbered as a spreadsheet shows them (the header is row 1; a cell may span lines)."""
    rows = _csv_rows(text, name, problems)
    number = 1
    try:
        number, cells = next(rows, (1, None))
        header = _csv_header(cells, name, problems) if number == 1 else None  # not 1: the header's quote is open
        if header is None:
            return []
        questions = []
        for number, cells in rows:
            where = f"{name} row {number}"
            stray = [i + 1 for i, cell in enumerate(cells) if cell.strip() and (i >= len(header) or not header[i])]
            if stray:
                problems.add(where, f"a value in column {', '.join(map(str, stray))}, which has no name in the header")
            values = {column: cell.strip() for column, cell in zip(header, cells, strict=False) if column}
            record = _csv_record(values, where, problems) if any(values.values()) else None  # empty rows: skipped
            question = _question(record, where, problems) if record is not None else None
            if question is not None:
                questions.append(question)
        return questions
    except csv.Error as exc:
        problems.add(f"{name} row {number + 1}", _csv_error(exc))
        return []


def read_questions(raw: bytes, name: str) -> list[Question]:
    """The questions of a question-set file's bytes (``name`` ends in .jsonl or .csv); every problem
    in it is raised together as one :class:`DataError`."""
    problems = _Problems(name)
    text = _decode(raw, name)
    read = _csv_questions if name.lower().endswith(".csv") else _jsonl_questions
    questions = read(text, name, problems)
    if not questions and not problems.messages:  # nothing but blank lines, or a CSV's header and empty rows
        problems.add(name, f"no questions ({EMPTY_FILE}{' but for its header row' if text.strip() else ''})")
    problems.raise_if_any()
    return questions


def _looks_like_set(path: Path) -> bool:
    """A .jsonl whose first line is an object with "question" and "choices" and no field outside the
    format (other layouts' JSONL, e.g. {"id", "question", "choices", "context"}, is not claimed), or a
    .csv whose header has id, question, choice_a and answer (MMLU's headerless CSVs are not)."""
    if path.suffix.lower() not in SUFFIXES or not path.is_file():
        return False
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES).removeprefix(_BOM).decode("utf-8", errors="replace")
    except OSError:
        return False
    first = next((line for line in head.splitlines() if line.strip()), "")
    if path.suffix.lower() == ".csv":
        header = {cell.strip().lower() for cell in next(csv.reader([first]), [])}
        return {"id", "question", "choice_a", "answer"} <= header
    try:
        row = json.loads(first)
    except json.JSONDecodeError:  # malformed or cut short: claimed when it names the fields, so the loader says why
        return all(re.search(f'"{key}"\\s*:', first) for key in ("id", "question", "choices"))
    return isinstance(row, dict) and {"question", "choices"} <= row.keys() <= set(FIELDS)


def find_question_sets(path: Path) -> list[Path]:
    """``path`` itself when it is a question-set file, or the question-set files directly in the folder ``path``."""
    if path.is_dir():
        return sorted(child for child in path.iterdir() if _looks_like_set(child))
    return [path] if _looks_like_set(path) else []


@loader(LAYOUT, "the documented question-set format: one .jsonl or .csv file (docs/question_sets.md)",
        find_question_sets)
def load_question_set(path: Path) -> Dataset:
    """Read and validate one question-set file (or the one such file in the folder ``path``)."""
    if path.is_dir():
        found = find_question_sets(path)
        if len(found) != 1:
            raise DataError(f"{path}: {len(found) or 'no'} question-set files (.jsonl/.csv in the documented "
                            "format); name the file")
        path = found[0]
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(f"{path}: a question set is a .jsonl or .csv file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    questions = read_questions(raw, path.name)
    return Dataset(root=path, questions=questions, fingerprint=hashlib.sha256(raw).hexdigest(), files=[path.name],
                   name=set_name(path.stem), label=path.stem, layout=LAYOUT, paper_choices=None)
