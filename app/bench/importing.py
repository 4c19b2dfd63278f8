"""Importing question sets into the library (``jmedllm bench data add``): a folder, a file or a zip.

Everything happens in a staging folder inside the library folder (``benchmarks/.import-*``, same
filesystem), so nothing is half-written under a set's name:

1. stage: unpack the zip (GitHub's, e.g. ``IgakuQA-main.zip``; every entry checked first: no
   ``..``, absolute paths, links or special files; size, count and compression-ratio limits, and
   the bytes actually unpacked counted against them, since headers can lie) or copy each set that
   :func:`~app.bench.loaders.discover` finds in the folder or file;
2. validate: each set is read by its layout's loader; every failing set is reported at once;
3. commit: each set's complete folder (``files/`` and ``manifest.json``) is renamed to
   ``benchmarks/NAME`` in one step (a replaced entry is moved aside first, then deleted).

A set is kept whole, as the layout found it: a folder set (an IgakuQA clone, with the
``baseline_results`` the app reads for baselines) as its folder, a file set as its file. Imports
and removals hold a lock on the library folder; the staging folders of an import that was killed
are removed by the next one. A refused import leaves the library as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from app.atomic import atomic_writer
from app.bench.data import DataError, Dataset
from app.bench.library import FILES, MANIFEST, NAME_PATTERN, Entry, entries, find, library_dir
from app.bench.loaders import LOADERS, Loader, discover, known_layouts
from app.bench.loaders.question_set import EMPTY_FILE, LAYOUT, SUFFIXES
from app.disk import free_bytes, size_text
from app.timestamps import utc_now

MAX_TOTAL_BYTES = 2 * 1024**3  # all files of one import, unpacked
MAX_FILE_BYTES = 512 * 1024**2  # one question file that is not a zip
MAX_FILES = 10_000  # IgakuQA's repository has about 250
MAX_RATIO = 100  # unpacked / packed, for entries over RATIO_FLOOR (JSONL packs about 5-10x)
RATIO_FLOOR = 1024**2
STAGING_PREFIX = ".import-"
_CHUNK = 1024**2
_BLANK_BYTES = 65536  # a file up to this size is read to see whether it holds nothing but blank lines
_BOM = b"\xef\xbb\xbf"
_OTHER_ARCHIVES = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd",
                   b"7z\xbc\xaf\x27\x1c": "7-Zip", b"Rar!\x1a\x07": "RAR"}  # magic bytes at the start
_TAR_MAGIC = (257, b"ustar")  # offset and magic of an uncompressed tar
_VCS_FOLDERS = frozenset({".git", ".hg", ".svn"})
_UTF8_FLAG = 0x800  # a zip entry's general-purpose flag: its name is UTF-8

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


class ImportRefused(DataError):
    """An import refused; the library is left as it was."""


class NameTaken(ImportRefused):
    """An imported set already has the name (``names``); said as the CLI's options (the web UI says its own)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__(f"An imported set is already called {', '.join(names)}; add --replace to replace it "
                         "(jmedllm bench data list shows what is there), or choose another --name")


@dataclass(frozen=True)
class _Staged:
    """A set copied or unpacked into the staging folder, with how the user knows it."""

    layout: Loader
    path: Path
    label: str  # "IgakuQA-main.zip: IgakuQA-main", or the folder or file it was copied from
    source: str  # recorded in the manifest


class _Meter:
    """Counts the bytes written against the import's limit and reports progress."""

    def __init__(self, label: str, total: int, on_progress: Progress | None) -> None:
        self.label, self.total, self.done, self.on_progress = label, total, 0, on_progress

    def add(self, n: int) -> None:
        self.done += n
        if self.done > MAX_TOTAL_BYTES:
            raise ImportRefused(f"{self.label}: more than {size_text(MAX_TOTAL_BYTES)} of data; refused")
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)


def add(path: Path, name: str | None = None, on_progress: Progress | None = None,
        replace: bool = False, shown_as: str | None = None) -> list[Entry]:
    """Import every set at ``path`` (a folder, a file or a zip) under ``name`` (default: each set's own
    name, e.g. "igakuqa"); a name already imported is an error unless ``replace``. Returns the new entries.

    ``shown_as``: the name the user knows ``path`` by when it is not the path itself (an upload's own
    file name, not the server's temporary copy): messages name it and it is recorded as the source."""
    source = Path(path).expanduser()
    if not source.exists():
        raise ImportRefused(f"{shown_as or source}: no such file or folder")
    if name is not None and not NAME_PATTERN.match(name):
        raise ImportRefused(f"Invalid name {name!r}: use up to 64 lowercase letters, digits, '.', '_' and '-', "
                            "starting with a letter or a digit")
    with _locked() as root:
        _remove_leftovers(root)
        if name is not None and not replace:
            _refuse_taken([name])
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
        try:
            sets = _stage(source, staging / "in", on_progress, shown_as)
            datasets = _validate(sets)
            names = _names(shown_as or str(source), sets, datasets, name)
            if not replace:
                _refuse_taken(names)
            return [_commit(staging, s, d, n) for s, d, n in zip(sets, datasets, names, strict=True)]
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def remove(name: str) -> Entry:
    """Delete the imported set ``name``; returns what it was."""
    with _locked() as root:
        entry = find(name)
        if entry is None:
            known = ", ".join(e.name for e in entries()) or "none"
            raise DataError(f"No imported set named {name!r} (imported: {known})")
        trash = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
        os.rename(entry.folder, trash / name)  # gone from the library in one step
        shutil.rmtree(trash, ignore_errors=True)
        return entry


@contextlib.contextmanager
def _locked() -> Iterator[Path]:
    """The library folder, locked against other imports and removals (a lock on the folder itself)."""
    root = library_dir()
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield root
    finally:
        os.close(fd)


def _remove_leftovers(root: Path) -> None:
    """Staging folders of imports that were killed (under the lock, no import is running)."""
    for child in root.iterdir():
        if child.name.startswith(STAGING_PREFIX) and child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)


def _refuse_taken(names: list[str]) -> None:
    taken = [n for n in names if (library_dir() / n).exists()]
    if taken:
        raise NameTaken(taken)


# --- stage ---------------------------------------------------------------------------------------


def _stage(source: Path, dest: Path, on_progress: Progress | None, shown_as: str | None) -> list[_Staged]:
    if source.is_file() and _blank(source):
        raise ImportRefused(f"{shown_as or source}: {EMPTY_FILE}; no question set to import")
    if source.is_file() and (source.suffix.lower() == ".zip" or zipfile.is_zipfile(source)):
        return _unpack_sets(source, dest, on_progress, shown_as)
    if source.is_file() and (kind := _other_archive(source)):
        raise ImportRefused(f"{shown_as or source}: a {kind} archive; only zip archives are imported. Unpack it "
                            "first (tar xf, 7z x, ...) and import the folder, or download the repository's zip")
    if source.is_file() and source.stat().st_size > MAX_FILE_BYTES:
        raise ImportRefused(f"{shown_as or source}: {size_text(source.stat().st_size)}, too large for a question "
                            f"file (at most {size_text(MAX_FILE_BYTES)}) and not a zip archive")
    return _copy_sets(source, dest, on_progress, shown_as)


def _blank(path: Path) -> bool:
    """A file of 0 bytes, or of nothing but blank lines (a byte-order mark allowed)."""
    size = path.stat().st_size
    if size > _BLANK_BYTES:
        return False
    with path.open("rb") as handle:
        return not handle.read(_BLANK_BYTES).removeprefix(_BOM).strip()


def _other_archive(path: Path) -> str | None:
    """The kind of a tar, compressed or other non-zip archive at ``path`` (by its first bytes), else None."""
    with path.open("rb") as handle:
        head = handle.read(_TAR_MAGIC[0] + len(_TAR_MAGIC[1]))
    if head[_TAR_MAGIC[0]:] == _TAR_MAGIC[1]:
        return "tar"
    return next((kind for magic, kind in _OTHER_ARCHIVES.items() if head.startswith(magic)), None)


def _no_set(where: str, empty: bool, archive: bool) -> ImportRefused:
    if empty:
        return ImportRefused(f"{where} is empty: no question set to import")
    what = "in the archive" if archive else "(nor a zip archive)"
    return ImportRefused(f"{where}: no question set in a known layout {what}. Known layouts:\n{known_layouts()}")


def _copy_sets(source: Path, dest: Path, on_progress: Progress | None, shown_as: str | None) -> list[_Staged]:
    where = shown_as or str(source)
    found = discover(source)
    if not found and source.is_file() and source.suffix.lower() in SUFFIXES:
        found = [(LOADERS[LAYOUT], source)]  # a .csv or .jsonl of its own: validation says why it is not a set
    if not found:
        raise _no_set(where, source.is_dir() and not any(source.iterdir()), archive=False)
    inventories = [_inventory(set_path) for _, set_path in found]
    files = [f for inventory in inventories for f in inventory]
    if len(files) > MAX_FILES:
        raise ImportRefused(f"{where}: more than {MAX_FILES} files; import the question set's own folder")
    meter = _Meter(where, sum(size for _, size in files), on_progress)
    _check_space(dest.parent, meter.total, where)
    staged = []
    for index, ((layout, set_path), inventory) in enumerate(zip(found, inventories, strict=True)):
        target = dest / str(index) / set_path.name
        for rel, _ in inventory:
            from_path = set_path / rel if set_path.is_dir() else set_path
            to_path = target / rel if set_path.is_dir() else target
            to_path.parent.mkdir(parents=True, exist_ok=True)
            with from_path.open("rb") as src:
                _write(src, to_path, meter, None, where if from_path == source else str(from_path))
        if shown_as is not None and set_path == source:
            staged.append(_Staged(layout, target, shown_as, shown_as))
        else:
            staged.append(_Staged(layout, target, str(set_path), str(set_path.resolve())))
    return staged


def _inventory(set_path: Path) -> list[tuple[Path, int]]:
    """The files of a set (relative path, size); a link to a file counts as the file, a link to a
    folder or a special file is refused, and so is a set over the limits (found before copying)."""
    if set_path.is_file():
        return [(Path(set_path.name), set_path.stat().st_size)]
    files: list[tuple[Path, int]] = []
    total = 0
    for folder, dirs, names in os.walk(set_path):
        dirs[:] = [d for d in dirs if d not in _VCS_FOLDERS]  # a git checkout: its history is not the set
        for d in dirs:
            if (Path(folder) / d).is_symlink():
                raise ImportRefused(f"{Path(folder) / d} is a link to a folder; copy the folder itself there")
        for n in names:
            path = Path(folder) / n
            try:
                info = path.stat()
            except OSError as exc:
                raise ImportRefused(f"{path}: cannot be read ({exc.strerror})") from None
            if not stat.S_ISREG(info.st_mode):
                raise ImportRefused(f"{path} is not a regular file")
            files.append((path.relative_to(set_path), info.st_size))
            total += info.st_size
            if len(files) > MAX_FILES or total > MAX_TOTAL_BYTES:
                raise ImportRefused(f"{set_path}: more than {MAX_FILES} files or {size_text(MAX_TOTAL_BYTES)}; "
                                    "import the question set's own folder")
    return files


def _unpack_sets(archive: Path, dest: Path, on_progress: Progress | None, shown_as: str | None) -> list[_Staged]:
    root = dest / archive.stem
    root.mkdir(parents=True)
    _unpack(archive, root, on_progress)
    found = discover(root)
    inner = list(root.iterdir())
    if not found and len(inner) == 1 and inner[0].is_dir():  # one top folder, as GitHub's zips have
        found = discover(inner[0])
    if not found:
        raise _no_set(archive.name, not any(root.iterdir()), archive=True)
    staged = []
    for layout, set_path in found:
        inside = set_path.relative_to(root).as_posix()
        label = archive.name if inside == "." else f"{archive.name}: {inside}"
        staged.append(_Staged(layout, set_path, label, shown_as or str(archive.resolve())))
    return staged


def _open_zip(archive: Path) -> zipfile.ZipFile:
    """The zip at ``archive``, its names read as Windows Explorer on a Japanese system writes them.

    A name without zip's UTF-8 flag is cp437 by the format's rule, but Explorer writes cp932 (Shift_JIS)
    there, so "内科.csv" came out garbled. When every such name is valid cp932, it is read as cp932."""
    zf = zipfile.ZipFile(archive)
    legacy = [info.filename for info in zf.infolist()
              if not info.flag_bits & _UTF8_FLAG and not info.filename.isascii()]
    if legacy and all(_is_cp932(name) for name in legacy):
        zf.close()
        return zipfile.ZipFile(archive, metadata_encoding="cp932")
    return zf


def _is_cp932(name: str) -> bool:
    """Whether the bytes of ``name`` (as zipfile read them: cp437) are cp932 text."""
    try:
        name.encode("cp437").decode("cp932")
    except UnicodeError:
        return False
    return True


def _unpack(archive: Path, dest: Path, on_progress: Progress | None) -> None:
    try:
        zf = _open_zip(archive)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ImportRefused(f"{archive.name}: not a zip archive, or a damaged (truncated?) one; "
                            "download it again") from None
    with zf:
        infos = zf.infolist()
        _check_entries(archive.name, infos)
        meter = _Meter(archive.name, sum(i.file_size for i in infos), on_progress)
        _check_space(dest, meter.total, archive.name)
        for info in infos:
            parts = _parts(info.filename)
            if not parts:
                continue
            target = dest.joinpath(*parts)
            try:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src:
                    _write(src, target, meter, info.file_size, f"{archive.name}: {info.filename}")
            except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
                raise ImportRefused(f"{archive.name}: {info.filename} is damaged ({exc}); download it again") from None
            except (NotImplementedError, RuntimeError) as exc:  # unknown compression, encryption
                raise ImportRefused(f"{archive.name}: {info.filename} cannot be unpacked ({exc})") from None
            except OSError as exc:
                raise ImportRefused(f"{archive.name}: {info.filename} could not be written ({exc.strerror or exc})") \
                    from None


def _parts(name: str) -> list[str]:
    """The path components of a zip entry's name ('\\' counts as a separator, '.' is dropped)."""
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def _check_entries(label: str, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse an archive whose entries could write outside the folder, are not plain files, or whose
    declared sizes are over the limits (the bytes unpacked are counted again by :class:`_Meter`)."""
    if len(infos) > MAX_FILES:
        raise ImportRefused(f"{label}: {len(infos)} entries, more than {MAX_FILES}; refused")
    unsafe = []
    for info in infos:
        name = info.filename
        mode = info.external_attr >> 16
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
            unsafe.append(f"{name} (an absolute path)")
        elif ".." in _parts(name) or "\0" in name:
            unsafe.append(f"{name} (goes outside the archive's folder)")
        elif stat.S_ISLNK(mode):
            unsafe.append(f"{name} (a symbolic link)")
        elif stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            unsafe.append(f"{name} (not a regular file)")
        elif info.flag_bits & 0x1:
            unsafe.append(f"{name} (encrypted)")
    if unsafe:
        more = f" and {len(unsafe) - 5} more" if len(unsafe) > 5 else ""
        raise ImportRefused(f"{label}: refused, unsafe entries: {', '.join(unsafe[:5])}{more}")
    total = sum(i.file_size for i in infos)
    if total > MAX_TOTAL_BYTES:
        raise ImportRefused(f"{label}: unpacks to {size_text(total)}, more than {size_text(MAX_TOTAL_BYTES)}; refused")
    for info in infos:
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise ImportRefused(f"{label}: {info.filename} unpacks {info.file_size // max(info.compress_size, 1)}"
                                f" times its packed size (a zip bomb?); refused")


def _write(src: IO[bytes], target: Path, meter: _Meter, declared: int | None, label: str) -> None:
    """Copy ``src`` to the new file ``target`` (0600), counting the bytes; more than ``declared`` is refused."""
    written = 0
    with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if declared is not None and written > declared:
                raise ImportRefused(f"{label}: holds more data than its header says (a zip bomb?); refused")
            out.write(chunk)
            meter.add(len(chunk))


def _check_space(folder: Path, needed: int, label: str) -> None:
    free = free_bytes(folder)
    if needed > free:
        raise ImportRefused(f"{label}: needs {size_text(needed)} of free space in {folder}, {size_text(free)} left")


# --- validate and commit -------------------------------------------------------------------------


def _validate(sets: list[_Staged]) -> list[Dataset]:
    """Every set read by its loader; the problems of all failing sets in one error."""
    datasets, problems = [], []
    for s in sets:
        try:
            datasets.append(s.layout.load(s.path))
        except DataError as exc:
            problems.append(f"{s.label} ({s.layout.name}): {exc}")
    if problems:
        raise ImportRefused("Not imported; the question set could not be read:\n" + "\n".join(problems))
    return datasets


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).lstrip("._-")[:64]


def _names(source: str, sets: list[_Staged], datasets: list[Dataset], name: str | None) -> list[str]:
    """``name``, or each set's own name; sets that share one get their folder or file name added."""
    if name is not None:
        if len(sets) > 1:
            found = "\n".join(f"  {s.label}" for s in sets)
            raise ImportRefused(f"{source} holds {len(sets)} question sets and --name names one; import them "
                                f"one at a time, or leave out --name:\n{found}")
        return [name]
    own = [_slug(d.name) for d in datasets]
    names = [n if own.count(n) == 1 else _slug(f"{n}-{s.path.stem}") for n, s in zip(own, sets, strict=True)]
    bad = [n for n in names if not NAME_PATTERN.match(n)] or [n for n in names if names.count(n) > 1]
    if bad:
        how = "import each set from its own file or folder, with --name" if len(sets) > 1 else "give a name with --name"
        raise ImportRefused(f"{source}: cannot name the set {bad[0]!r}; {how}")
    return names


def _commit(staging: Path, staged: _Staged, dataset: Dataset, name: str) -> Entry:
    """Build the entry's folder in ``staging``, then rename it into the library in one step."""
    folder = staging / "entries" / name
    (folder / FILES).mkdir(parents=True)
    set_path = staged.path.name
    os.rename(staged.path, folder / FILES / set_path)
    entry = Entry(name=name, label=dataset.label, layout=staged.layout.name, set_path=set_path,
                  fingerprint=dataset.fingerprint, questions=len(dataset.questions), languages=dataset.languages,
                  source=staged.source, added_at=utc_now())
    with atomic_writer(folder / MANIFEST, private=True) as handle:
        handle.write(json.dumps(entry.as_dict(), indent=2, ensure_ascii=False).encode("utf-8"))
    _make_private(folder)
    target = library_dir() / name
    replaced = staging / "replaced" / name
    if target.exists():
        replaced.parent.mkdir(exist_ok=True)
        os.rename(target, replaced)
    try:
        os.rename(folder, target)
    except BaseException:  # Ctrl-C included: the replaced entry goes back, never deleted with the staging folder
        if replaced.exists():
            os.rename(replaced, target)
        raise
    return entry


def _make_private(folder: Path) -> None:
    """Folders 0700, files 0600, like the library folder itself."""
    os.chmod(folder, 0o700)
    for parent, dirs, names in os.walk(folder):
        for d in dirs:
            os.chmod(Path(parent) / d, 0o700)
        for n in names:
            os.chmod(Path(parent) / n, 0o600)
