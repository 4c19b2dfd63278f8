"""A trained model's recorded overlap with the benchmark sets, shown beside its benchmark scores.

``jmedllm train`` compares its training texts with the benchmark sets the app knows
(:mod:`model_tools.train.leakage`) and records the result in the adapter's ``training.json``;
``jmedllm convert build --adapter DIR`` carries a summary of it into the GGUF as :data:`OVERLAP_KEY`
(JSON text, :func:`encode_overlap`); a benchmark run keeps the model's summary with the run
(``runs.training_overlap``, :func:`run_overlap`), and its report shows the counts for the set it
asked next to the score (:func:`overlap_line`). A model trained elsewhere has no record: nothing is
shown, which says nothing either way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.gguf_metadata import GGUFFormatError, printable, read_gguf_metadata
from app.model_card import ModelCard

OVERLAP_KEY = "jmedllm.training.overlap"
FORMAT_VERSION = 1
MAX_RECORD_CHARS = 2**16
_SET_FIELDS = {"name": str, "fingerprint": str, "questions": int, "exact": int, "near": int}


def encode_overlap(leakage: Mapping[str, Any]) -> str:
    """The GGUF value for a leakage report (``LeakageReport.as_dict()``, as training.json holds it): the
    counts per set and in all, the threshold and the training texts' sha256, without the overlaps."""
    record = {"version": FORMAT_VERSION, "texts_sha256": leakage["texts_sha256"],
              "threshold": leakage["threshold"], "exact": leakage["exact"], "near": leakage["near"],
              "sets": [{key: s[key] for key in _SET_FIELDS} for s in leakage["sets"]]}
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def recorded_overlap(metadata: Mapping[str, object]) -> dict[str, Any] | None:
    """The record under :data:`OVERLAP_KEY` of a GGUF's metadata; None when there is none or it is not
    one this version reads (the file is not trusted: this never raises)."""
    text = metadata.get(OVERLAP_KEY)
    if not isinstance(text, str) or len(text) > MAX_RECORD_CHARS:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if _well_formed(record) else None


def _well_formed(record: object) -> bool:
    if not isinstance(record, dict) or record.get("version") != FORMAT_VERSION:
        return False
    counts = (record.get(key) for key in ("exact", "near"))
    sets = record.get("sets")
    return (isinstance(record.get("texts_sha256"), str) and isinstance(record.get("threshold"), (int, float))
            and all(isinstance(n, int) and not isinstance(n, bool) for n in counts) and isinstance(sets, list)
            and all(isinstance(s, dict) and all(isinstance(s.get(key), kind) and not isinstance(s.get(key), bool)
                                                for key, kind in _SET_FIELDS.items()) for s in sets))


def run_overlap(card: ModelCard) -> str | None:
    """What a benchmark run of ``card``'s model keeps (``runs.training_overlap``): the model file's
    record as JSON text; None for a served model (no file here) or a file without a record."""
    if card.endpoint is not None:
        return None
    try:
        record = recorded_overlap(read_gguf_metadata(Path(card.path)).values)
    except (GGUFFormatError, OSError):
        return None
    return json.dumps(record, ensure_ascii=False) if record is not None else None


def overlap_line(run: Mapping[str, Any]) -> str | None:
    """One line for the run's report: the recorded overlap of the model's training data with the set
    the run asked; None when the model has no record."""
    record = recorded_overlap({OVERLAP_KEY: run.get("training_overlap")})
    if record is None:
        return None
    benchmark = str(run.get("benchmark") or "igakuqa")
    entry = next((s for s in record["sets"] if s["name"] == benchmark), None)
    if entry is None:
        checked = ", ".join(printable(s["name"]) for s in record["sets"]) or "none"
        return (f"Training-data overlap: {printable(benchmark)} was not checked when this model was trained "
                f"(checked: {checked}).")
    version = ("" if entry["fingerprint"] == run.get("data_fingerprint") else
               f"; checked against another version of this set, data {printable(entry['fingerprint'][:12])}")
    return (f"Training-data overlap with {printable(benchmark)} (recorded when this model was trained): "
            f"{entry['exact']:,} exact, {entry['near']:,} near-duplicate of {entry['questions']:,} questions "
            f"(threshold {record['threshold']:.2f}{version}).")
