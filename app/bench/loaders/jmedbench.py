"""JMedBench's multiple-choice sets (huggingface.co/datasets/Coldog2333/JMedBench).

Checked against JMedBench's own evaluation code, github.com/nii-nlp/med-eval at 44ba5f4:
``data_loaders/base.py`` ``load_mcqa_samples`` reads a local copy as ``<root>/<set>/{train,test,
validation}.jsonl`` (the dataset card's configs name the same files), each line a ``MCQASample``
(``tasks/mcqa.py``): ``sample_id`` (text or number), ``question``, ``options`` (the choice texts,
none empty), ``answer_idx`` (the 0-based index of the correct option: the harness scores
``options[answer_idx]``), ``n_options`` (recomputed upstream as ``len(options)``) and ``metadata``.
The context-based sets (pubmedqa_jp; crade, rrtnm, smdis) keep the passage the question is about
in ``metadata["context"]``, which upstream's templates put before the question; so does this
loader (context, a blank line, the question).

Only ``test.jsonl`` is read (train is upstream's few-shot pool). A folder is a multiple-choice set
when its ``test.jsonl`` starts with a record that has ``question``, ``options`` and ``answer_idx``
(the NER, MT and STS sets do not). Each set is its own benchmark, "jmedbench-<set>": upstream pairs
no Japanese set with an English one. Its language follows upstream's naming (``*_jp``, igakuqa,
jmmlu*, crade, rrtnm, smdis: Japanese; ``*_en`` and the sets named after English benchmarks:
English); a set with another name is Japanese when most of its questions contain Japanese script.
``paper_choices`` is the set's choice count when every question has the same one, else None.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from app.bench.data import DataError, Dataset, Question, json_object
from app.bench.loaders import loader
from app.bench.loaders.harness import LETTERS, check_choices, check_unique, plain_question, read_source, search

SPLIT = "test.jsonl"
REQUIRED = ("question", "options", "answer_idx")
JAPANESE_SETS = {"igakuqa", "jmmlu", "jmmlu_medical", "crade", "rrtnm", "smdis"}
ENGLISH_SETS = {"medmcqa", "medqa", "usmleqa", "mmlu", "mmlu_medical", "mmlu_pro", "mmlu_pro_medical", "pubmedqa"}
SEARCH_DEPTH = 2  # JMedBench/<set>/test.jsonl
_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
_SNIFF_BYTES = 65536


def _is_mcqa(folder: Path) -> bool:
    test = folder / SPLIT
    if not test.is_file():
        return False
    try:
        with test.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES).decode("utf-8", errors="ignore")
        first = json.loads(next(line for line in head.splitlines() if line.strip()))
    except (OSError, StopIteration, ValueError):
        return False
    return isinstance(first, dict) and all(key in first for key in REQUIRED)


def find_jmedbench(path: Path) -> list[Path]:
    """The multiple-choice set folders at or under ``path`` (or the one whose test.jsonl ``path`` is)."""
    if path.is_file():
        return [path.parent] if path.name == SPLIT and _is_mcqa(path.parent) else []
    return search(path, _is_mcqa, SEARCH_DEPTH)


def set_language(name: str, texts: list[str]) -> str:
    """"ja" or "en": by upstream's set name, else by the script most questions are written in."""
    if name.endswith("_jp") or name in JAPANESE_SETS or (name.startswith("igakuqa") and not name.endswith("_en")):
        return "ja"
    if name.endswith("_en") or name in ENGLISH_SETS:
        return "en"
    japanese = sum(bool(_JAPANESE.search(t)) for t in texts)
    return "ja" if japanese * 2 > len(texts) else "en"


def _row(line: str, where: str) -> tuple[str, str, tuple[str, ...], tuple[str, ...]]:
    """(id, text with any context, choices, answer letters) of one record."""
    row = json_object(line, where)
    sample_id = row.get("sample_id")
    if not isinstance(sample_id, (str, int)) or isinstance(sample_id, bool) or not str(sample_id).strip():
        raise DataError(f"{where}: 'sample_id' is missing or not a text or number")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: {sample_id}: no 'question'")
    choices = check_choices(row.get("options"), f"{where}: {sample_id}")
    index = row.get("answer_idx")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(choices):
        raise DataError(f"{where}: {sample_id}: 'answer_idx' {index!r} is not an index of its "
                        f"{len(choices)} options (0 to {len(choices) - 1})")
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise DataError(f"{where}: {sample_id}: 'metadata' is not an object")
    context = metadata.get("context")
    text = question.strip()
    if isinstance(context, str) and context.strip():
        text = f"{context.strip()}\n\n{text}"
    return str(sample_id).strip(), text, choices, (LETTERS[index],)


@loader("jmedbench", "JMedBench multiple-choice sets (<set>/test.jsonl: sample_id, question, options, answer_idx)",
        find_jmedbench)
def read_jmedbench(path: Path) -> Dataset:
    folder = path.parent if path.is_file() else path
    name = folder.name
    rel = f"{name}/{SPLIT}"
    digest = hashlib.sha256()
    rows = [(f"{rel}:{n}", *_row(line, f"{rel}:{n}"))
            for n, line in enumerate(read_source(folder / SPLIT, rel, digest).splitlines(), start=1) if line.strip()]
    if not rows:
        raise DataError(f"{rel}: no questions")
    language = set_language(name, [text for _, _, text, _, _ in rows])
    questions: list[Question] = [plain_question(i, language, text, choices, answer, where)
                                 for where, i, text, choices, answer in rows]
    check_unique(questions)
    counts = {q.n_choices for q in questions}
    return Dataset(root=folder, questions=questions, fingerprint=digest.hexdigest(), files=[rel],
                   name=f"jmedbench-{name.lower().replace('_', '-')}", label=f"JMedBench {name}", layout="jmedbench",
                   paper_choices=counts.pop() if len(counts) == 1 else None)
