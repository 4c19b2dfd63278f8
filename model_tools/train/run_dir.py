"""The output folder of a run: checkpoints while training, the finished model at the end, nothing half-written.

Layout while training: ``OUT/checkpoints/run.json`` (the settings hash: whose checkpoints these
are) and ``OUT/checkpoints/checkpoint-N/`` (the Trainer's, each sealed with ``jmedllm-seal.json``,
the sha256 of every file in it). Checkpoints hold pickles written by torch (optimizer, scheduler,
RNG states): they are read back only to resume, only from a checkpoint whose seal matches, in a
folder whose ``run.json`` has this run's settings hash, so a file we did not write is never
unpickled. The finished outputs are safetensors and JSON only: they are staged in
``OUT/checkpoints/final/``, moved into ``OUT`` one by one with ``training.json`` last (a finished
run is one with ``training.json``), then the checkpoints are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from app.atomic import write_json_atomic
from model_tools.train.errors import TrainError

CHECKPOINTS = "checkpoints"
RUN_FILE = "run.json"
SEAL_FILE = "jmedllm-seal.json"
MANIFEST = "training.json"
STAGE = "final"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != SEAL_FILE}


def seal(checkpoint: Path) -> None:
    """Record the sha256 of every file of a checkpoint the Trainer has just written."""
    write_json_atomic(checkpoint / SEAL_FILE, _digests(checkpoint))


def _sealed(checkpoint: Path) -> bool:
    try:
        return bool(json.loads((checkpoint / SEAL_FILE).read_text(encoding="utf-8")) == _digests(checkpoint))
    except (OSError, ValueError):
        return False


def checkpoints_dir(out: Path) -> Path:
    return Path(out) / CHECKPOINTS


def _check_writable(out: Path) -> None:
    """``out``, or before it exists its nearest existing parent, is a folder this user can write in."""
    probe = out
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise TrainError(f"--out {out}: {probe} is a file, not a folder; choose a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise TrainError(f"--out {out}: cannot write in {probe} (permission denied); choose a folder you can write in")


def prepare(out: Path, run_hash: str, resume: bool, overwrite: bool) -> Path | None:
    """Check ``out`` before anything is written; return the checkpoint to resume from, if any.

    Refuses a finished run (unless ``overwrite``), a folder with files that are not ours, and
    checkpoints of other settings or without our marker; ``resume=False`` discards our own checkpoints
    (at :func:`start`, not here).
    """
    out = Path(out)
    _check_writable(out)
    if not out.exists():
        return None
    others = [p.name for p in out.iterdir() if p.name != CHECKPOINTS]
    folder = checkpoints_dir(out)
    if (out / MANIFEST).is_file():
        if not overwrite:
            raise TrainError(f"{out} holds a finished model ({MANIFEST}); use --overwrite to replace it, "
                             "or choose another --out")
    elif others and not (folder / RUN_FILE).is_file():  # with our marker: what an interrupted publish left
        raise TrainError(f"--out {out} exists and holds files that are not a training run's: "
                         f"{', '.join(sorted(others)[:5])}; choose an empty or new folder")
    if not folder.exists():
        return None
    try:
        marker = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrainError(f"{folder} was not written by jmedllm train (no valid {RUN_FILE}); "
                         "remove it or choose another --out") from exc
    if not resume:
        return None
    steps = sorted((int(m[1]), p) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir())
    if marker.get("settings_hash") != run_hash and steps:
        raise TrainError(f"{folder} holds checkpoints of a run with other data or settings; run the same "
                         "command again to resume it, or pass --no-resume to discard them and start over")
    for _, checkpoint in reversed(steps):
        if _sealed(checkpoint):
            return checkpoint
    return None


def start(out: Path, run_hash: str, resume: bool) -> Path:
    """Create ``OUT/checkpoints`` with this run's marker (after :func:`prepare`); return it."""
    folder = checkpoints_dir(out)
    if folder.exists() and not resume:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / RUN_FILE, {"settings_hash": run_hash})
    shutil.rmtree(folder / STAGE, ignore_errors=True)
    return folder


def publish(out: Path) -> list[Path]:
    """Move the staged outputs into ``out`` (``training.json`` last), then drop the checkpoints.

    What ``out`` held besides the checkpoints goes first, ``training.json`` before the rest: the finished
    model ``--overwrite`` replaces, or what an interrupted publish left. Killed part-way, ``out`` is an
    unfinished run whose checkpoints are still there, and the same command finishes it."""
    out = Path(out)
    staged = checkpoints_dir(out) / STAGE
    (out / MANIFEST).unlink(missing_ok=True)
    for item in out.iterdir():
        if item.name != CHECKPOINTS:
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    names = sorted(p.name for p in staged.iterdir() if p.name != MANIFEST) + [MANIFEST]
    for name in names:
        os.replace(staged / name, out / name)
    shutil.rmtree(checkpoints_dir(out))
    return [out / name for name in names]
