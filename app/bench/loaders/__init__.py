"""The layout registry: each question-set layout people have, read by one module here.

A :class:`Loader` knows one layout: ``find(path)`` lists the sets of that layout in a folder (or
the file itself), and ``load(set_path)`` reads one set into a validated
:class:`~app.bench.data.Dataset`, naming the file and line of any error. ``bench data add``, the
runner and the Benchmark tab all go through :func:`discover` and :func:`load_path`. Adding a
layout is one module with one decorated function, imported at the end of this file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.bench.data import DataError, Dataset

Finder = Callable[[Path], list[Path]]
Reader = Callable[[Path], Dataset]


@dataclass(frozen=True)
class Loader:
    """A layout: its name, a one-line description, how to find its sets, how to read one."""

    name: str
    description: str
    find: Finder
    load: Reader


LOADERS: dict[str, Loader] = {}


def loader(name: str, description: str, find: Finder) -> Callable[[Reader], Reader]:
    """Register the decorated reader as layout ``name`` (registration order is detection order)."""

    def register(load: Reader) -> Reader:
        if name in LOADERS:
            raise ValueError(f"layout {name} is declared twice")
        LOADERS[name] = Loader(name, description, find, load)
        return load

    return register


def known_layouts() -> str:
    """"name: description" per layout, one a line, for error messages and help."""
    return "\n".join(f"  {x.name}: {x.description}" for x in LOADERS.values())


def discover(path: Path) -> list[tuple[Loader, Path]]:
    """Every set under ``path`` (a file or folder) with the layout that reads it, in registry order;
    a set claimed by an earlier layout is not listed again."""
    found: list[tuple[Loader, Path]] = []
    claimed: set[Path] = set()
    for layout in LOADERS.values():
        for set_path in layout.find(path):
            if set_path.resolve() not in claimed:
                claimed.add(set_path.resolve())
                found.append((layout, set_path))
    return found


def load_path(path: Path, layout: str | None = None) -> Dataset:
    """The one question set at ``path``, read by ``layout`` (None: the layout that finds it)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if layout is not None:
        if layout not in LOADERS:
            raise DataError(f"Unknown layout {layout!r}; known layouts:\n{known_layouts()}")
        return LOADERS[layout].load(path)
    found = discover(path)
    if not found:
        raise DataError(f"{path}: no question set in a known layout. Known layouts:\n{known_layouts()}")
    if len(found) > 1:
        sets = "\n".join(f"  {p} ({x.name})" for x, p in found)
        raise DataError(f"{path} holds {len(found)} question sets; choose one:\n{sets}")
    chosen, set_path = found[0]
    return chosen.load(set_path)


# registers the layouts, in detection order (the own format last: upstream layouts win)
from app.bench.loaders import harness, igakuqa, igakuqa119, jmedbench, mmlu, question_set  # noqa: E402,F401
