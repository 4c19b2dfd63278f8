"""The leakage check: training texts that repeat a benchmark question, exactly or nearly.

Before training, every training text is compared with every question of the benchmark sets the app
knows (IgakuQA and each imported set), in each language a question has: its text and its choices.

- Text is normalised first: NFKC, lower case, and only letters and digits kept (whitespace and
  punctuation, 、。「」・ included, are dropped), so layout, full-width forms and choice letters do
  not hide a copy.
- **exact**: the training text is the question (its text, or text and choices), or it holds the
  whole question text and every choice (together at least :data:`MIN_CONTAINED_CHARS` characters).
- **near**: the share of the question's distinctive character n-grams (:data:`NGRAM` characters:
  5 for Japanese, 10 for English) found in the training text, its *containment*, is at least the
  threshold (:data:`DEFAULT_THRESHOLD`), and so is the share of its text's own. Distinctive: held by
  at most :data:`COMMON_SHARE` of the questions, so the exam's stock phrases (のはどれか, 来院した)
  count for nothing; choices too short for an n-gram count whole. Containment, not Jaccard
  similarity, because a training example usually holds more than the question (a template, the
  answer, an explanation): a question inside a long text is still found. The text and each choice
  are cut into n-grams separately, so reordering the choices changes nothing.

The threshold: on IgakuQA's 2,000 Japanese questions, three random characters changed and the
choices shuffled keep containment >= 0.5 for 98% of them (0.6: 96%), while 2% of the questions reach
0.5 against another question of the set, mostly the same case reused in another year or the shared
stem of linked questions, which is leakage too (0.6: 1%). tests/train/test_leakage.py pins a
paraphrase caught and a same-topic question not.

Speed: the distinctive n-grams of all questions, hashed (64-bit, numpy) and sorted, are an inverted
index; one lookup of a training text's n-grams counts, for every question at once, how many of them
it holds, which is exactly the containment's numerator, so only questions that can reach the
threshold are looked at further, with nothing estimated. (MinHash with LSH banding estimates
Jaccard similarity, which misses a question inside a longer text.) No new dependency; 2,000
training texts against IgakuQA in both languages take a few seconds on one core.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from app.bench.data import DataError, Dataset
from model_tools.train.errors import TrainError

DEFAULT_THRESHOLD = 0.5
NGRAM = {"ja": 5, "en": 10}
MIN_CONTAINED_CHARS = 20  # a shorter question (text and choices) is exact only as the whole training text
COMMON_SHARE = 0.01  # n-grams held by more than this share of the questions (and > COMMON_FLOOR) are not indexed
COMMON_FLOOR = 50
EXCERPT_CHARS = 80
MAX_LISTED = 20
PROGRESS_EVERY = 500
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd: the n-gram hash's base, modulo 2**64
_NOT_ALNUM = re.compile(r"[\W_]+")  # \w: what str.isalnum() accepts (letters, digits, kana, kanji, ー, 々), and _

Progress = Callable[[int, int], None]  # (training texts done, training texts in all)


def normalise(text: str) -> str:
    """NFKC, lower case, letters and digits only."""
    return _NOT_ALNUM.sub("", unicodedata.normalize("NFKC", text).lower())


def _ngrams(parts: Sequence[str], n: int) -> np.ndarray:
    """The distinct n-grams within each of ``parts`` (normalised: no NUL), each as a 64-bit polynomial
    hash of its code points, sorted."""
    codes = np.frombuffer("\0".join(parts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    count = len(codes) - n + 1
    if count <= 0:
        return np.empty(0, np.uint64)
    hashes = np.full(count, n, np.uint64)
    for k in range(n):
        hashes = hashes * _MULTIPLIER + codes[k:k + count]
    breaks = np.concatenate([[0], np.cumsum(codes == 0)])
    return np.unique(hashes[breaks[n:] == breaks[:count]])  # no n-gram across two parts


@dataclass(frozen=True)
class Overlap:
    """One training text that repeats one benchmark question."""

    index: int  # the training text's position in the texts checked
    excerpt: str  # its start
    set_name: str
    problem_id: str
    language: str
    kind: str  # "exact" or "near"
    similarity: float  # containment of the question's n-grams in the training text; 1.0 for exact


@dataclass
class LeakageReport:
    """Every overlap found, the sets compared with, and what could not be checked."""

    overlaps: list[Overlap]
    sets_checked: list[dict[str, Any]]  # name, fingerprint, questions
    texts: int
    texts_sha256: str  # over the training texts checked, in order
    threshold: float
    notes: list[str] = field(default_factory=list)

    @property
    def exact(self) -> int:
        return sum(o.kind == "exact" for o in self.overlaps)

    @property
    def near(self) -> int:
        return sum(o.kind == "near" for o in self.overlaps)

    def as_dict(self) -> dict[str, Any]:
        """For training.json: totals, each set with its own counts, every overlap, the notes."""
        sets = [{**s, "exact": sum(o.kind == "exact" and o.set_name == s["name"] for o in self.overlaps),
                 "near": sum(o.kind == "near" and o.set_name == s["name"] for o in self.overlaps)}
                for s in self.sets_checked]
        return {"texts": self.texts, "texts_sha256": self.texts_sha256, "threshold": self.threshold,
                "method": f"normalised text; character n-gram containment {NGRAM}", "exact": self.exact,
                "near": self.near, "sets": sets, "overlaps": [asdict(o) for o in self.overlaps],
                "notes": self.notes}

    def message(self) -> str:
        """What was compared and the overlaps found (the first :data:`MAX_LISTED`), for the terminal."""
        checked = "; ".join(f"{s['name']}: {s['questions']:,} questions, data {s['fingerprint'][:12]}"
                            for s in self.sets_checked) or "none"
        lines = [f"Leakage check: {self.texts:,} training texts against benchmark sets ({checked})."]
        if self.overlaps:
            examples = len({o.index for o in self.overlaps})
            lines.append(f"{examples:,} training texts repeat benchmark questions: {self.exact:,} exact, "
                         f"{self.near:,} near-duplicate (n-gram containment >= {self.threshold:.2f}):")
            lines += [f"  text {o.index}: {o.set_name} {o.problem_id} [{o.language}] "
                      f"{'exact' if o.kind == 'exact' else f'near {o.similarity:.2f}'}: {o.excerpt!r}"
                      for o in self.overlaps[:MAX_LISTED]]
            if len(self.overlaps) > MAX_LISTED:
                lines.append(f"  … and {len(self.overlaps) - MAX_LISTED:,} more (all are recorded in training.json)")
        else:
            lines.append(f"No training text repeats a benchmark question (exact, or n-gram containment >= "
                         f"{self.threshold:.2f}).")
        lines += [f"Note: {note}" for note in self.notes]
        return "\n".join(lines)


class LeakageFound(TrainError):
    """Training texts repeat benchmark questions; training stops unless the overlap is allowed."""

    def __init__(self, report: LeakageReport) -> None:
        self.report = report
        super().__init__(f"{report.message()}\nTraining stopped: remove these examples from the training data, or "
                         "pass --allow-overlap to train anyway (the overlap is then recorded with the model).")


@dataclass(frozen=True, eq=False)
class _Question:
    """One benchmark question in one language, normalised; ``short``: its parts too short for an n-gram."""

    set_name: str
    problem_id: str
    language: str
    text: str
    choices: tuple[str, ...]
    stem: np.ndarray  # the text's n-grams
    rest: np.ndarray  # the choices' n-grams that are not the text's
    short: tuple[str, ...]

    def is_exact(self, training: str) -> bool:
        if training in (self.text, self.text + "".join(self.choices)):
            return True
        return (len(self.text) + sum(map(len, self.choices)) >= MIN_CONTAINED_CHARS and self.text in training
                and all(choice in training for choice in self.choices))


def _questions(dataset: Dataset) -> Iterable[_Question]:
    for q in dataset.questions:
        for language in q.languages:
            text, choices = normalise(q.text(language)), tuple(filter(None, map(normalise, q.choices(language))))
            n = NGRAM[language]
            stem = _ngrams([text], n)
            rest = np.setdiff1d(_ngrams([text, *choices], n), stem, assume_unique=True)
            yield _Question(dataset.name, q.problem_id, language, text, choices, stem, rest,
                            tuple(part for part in (text, *choices) if len(part) < n))


class _Index:
    """The questions of all sets, each measured on its distinctive n-grams (those at most
    :data:`COMMON_SHARE` of the questions hold: not the exam's stock phrases such as のはどれか) and
    its parts too short for one; and the distinctive n-grams, sorted, each with its question."""

    def __init__(self, sets: Sequence[Dataset], threshold: float) -> None:
        self.questions = [q for dataset in sets for q in _questions(dataset)]
        self.threshold = threshold
        self.sizes = sorted({NGRAM[q.language] for q in self.questions})
        self.whole: dict[str, list[int]] = {}  # normalised text, and text + choices -> questions
        for i, q in enumerate(self.questions):
            for form in {q.text, q.text + "".join(q.choices)} - {""}:
                self.whole.setdefault(form, []).append(i)
        parts = [part for q in self.questions for part in (q.stem, q.rest)]
        grams = np.concatenate(parts or [np.empty(0, np.uint64)])
        # each n-gram's posting: 2 x question (an n-gram of its text) or 2 x question + 1 (only of its choices)
        posts = np.repeat(np.arange(len(parts)), [len(part) for part in parts])
        _, inverse, held = np.unique(grams, return_inverse=True, return_counts=True)
        rare = held[inverse] <= max(COMMON_FLOOR, COMMON_SHARE * len(self.questions))
        order = np.argsort(grams[rare], kind="stable")
        self.grams, self.posts = grams[rare][order], posts[rare][order]
        counts = np.bincount(self.posts, minlength=len(parts)).reshape(-1, 2)
        self.stem = counts[:, 0]  # distinctive n-grams of the text
        short = np.array([len(q.short) for q in self.questions], dtype=np.int64)
        self.size = counts.sum(axis=1) + short  # the similarity's denominator
        # n-gram hits below which the similarity cannot reach the threshold
        self.needed = np.maximum(1, np.ceil(threshold * self.size - 1e-9).astype(np.int64) - short)

    def hits(self, training: str, grams: np.ndarray) -> dict[int, tuple[int, int]]:
        """Candidate questions of a normalised training text (its n-grams ``grams``): the distinctive
        n-grams of their text and of their choices that it holds."""
        low = np.searchsorted(self.grams, grams, "left")
        lengths = np.searchsorted(self.grams, grams, "right") - low
        starts = np.repeat(low - np.cumsum(lengths) + lengths, lengths)
        found = self.posts[starts + np.arange(len(starts))]
        counts = np.bincount(found, minlength=2 * len(self.questions)).reshape(-1, 2)
        candidates = np.flatnonzero(counts.sum(axis=1) >= self.needed)
        exact = {i: (0, 0) for i in self.whole.get(training, ())}
        return {**exact, **{int(i): (int(counts[i, 0]), int(counts[i, 1])) for i in candidates}}

    def similarity(self, i: int, training: str, hits: tuple[int, int]) -> float:
        """Containment of question ``i`` in ``training``; 0 where less than the threshold's share of its
        text's distinctive n-grams is there (a text that only names its choices does not repeat it)."""
        if self.stem[i] and hits[0] < self.threshold * self.stem[i]:
            return 0.0
        found = sum(part in training for part in self.questions[i].short)
        return float((sum(hits) + found) / self.size[i]) if self.size[i] else 0.0


def known_sets() -> tuple[list[Dataset], list[str]]:
    """Every benchmark set the app knows: IgakuQA (where it is found) and each imported set; notes say
    what could not be read."""
    from app.bench import library
    from app.bench.sources import load_dataset

    sets: list[Dataset] = []
    notes: list[str] = []
    try:
        sets.append(load_dataset(None))
    except DataError as exc:
        notes.append(f"IgakuQA not checked: {str(exc).splitlines()[0]}")
    for entry in library.entries():
        try:
            dataset = library.open_entry(entry)
        except DataError as exc:
            notes.append(f"imported set {entry.name} not checked: {exc}")
            continue
        if all((d.name, d.fingerprint) != (dataset.name, dataset.fingerprint) for d in sets):
            sets.append(dataset)
    return sets, notes


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[:EXCERPT_CHARS] + "…"


def _texts_sha256(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
    return digest.hexdigest()


def _match(index: _Index, position: int, text: str, threshold: float) -> list[Overlap]:
    """The questions ``text`` repeats, at most one overlap per question (its strongest language)."""
    training = normalise(text)
    grams = np.unique(np.concatenate([_ngrams([training], n) for n in index.sizes] or [np.empty(0, np.uint64)]))
    best: dict[tuple[str, str], Overlap] = {}
    for i, hits in index.hits(training, grams).items():
        q = index.questions[i]
        if q.is_exact(training):
            kind, similarity = "exact", 1.0
        else:
            kind, similarity = "near", index.similarity(i, training, hits)
            if similarity < threshold:
                continue
        found = Overlap(position, _excerpt(text), q.set_name, q.problem_id, q.language, kind, round(similarity, 4))
        key = (q.set_name, q.problem_id)
        if key not in best or (kind == "exact", similarity) > (best[key].kind == "exact", best[key].similarity):
            best[key] = found
    return sorted(best.values(), key=lambda o: (o.set_name, o.problem_id))


def check_leakage(texts: Sequence[str], sets: Sequence[Dataset] | None = None,
                  threshold: float = DEFAULT_THRESHOLD, on_progress: Progress | None = None) -> LeakageReport:
    """Compare ``texts`` with the questions of ``sets`` (None: :func:`known_sets`)."""
    if not 0 < threshold <= 1:
        raise TrainError(f"The leakage threshold must be above 0 and at most 1, not {threshold}")
    notes: list[str] = []
    if sets is None:
        sets, notes = known_sets()
    index = _Index(sets, threshold)
    overlaps: list[Overlap] = []
    for position, text in enumerate(texts):
        overlaps += _match(index, position, text, threshold)
        if on_progress is not None and ((position + 1) % PROGRESS_EVERY == 0 or position + 1 == len(texts)):
            on_progress(position + 1, len(texts))
    checked = [{"name": d.name, "fingerprint": d.fingerprint, "questions": len(d.questions)} for d in sets]
    return LeakageReport(overlaps, checked, len(texts), _texts_sha256(texts), threshold, notes)
