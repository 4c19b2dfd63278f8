"""Atomic writes (app.atomic) and the shared log-softmax (app.numeric)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from app.atomic import atomic_path, atomic_writer, write_json_atomic
from app.numeric import log_softmax


def test_atomic_writer_leaves_no_partial_file_and_keeps_the_old_target(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_writer(target) as handle:
        handle.write(b"half-written")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_atomic_writer_replaces_the_target(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "data.bin"
    with atomic_writer(target) as handle:
        handle.write(b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.bin"]


def test_atomic_path_gives_umask_normal_permissions(tmp_path: Path) -> None:
    target = tmp_path / "model.gguf"
    old = os.umask(0o027)
    try:
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp != target
            tmp.write_bytes(b"gguf")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"gguf"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_a_private_file_is_0600_in_a_new_0700_folder_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "new" / "users.txt"
    old = os.umask(0o022)
    try:
        with atomic_writer(target, private=True) as handle:
            assert stat.S_IMODE(os.stat(handle.fileno()).st_mode) == 0o600  # private while it is written
            handle.write(b"secret")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700


def test_write_json_atomic_round_trips_japanese(tmp_path: Path) -> None:
    data = {"質問": "高血圧の第一選択薬は？", "scores": [1, 2.5], "passed": True}
    path = tmp_path / "report.json"
    write_json_atomic(path, data)
    raw = path.read_bytes()
    assert raw == json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")
    assert "高血圧".encode() in raw
    assert json.loads(raw.decode("utf-8")) == data


def _reference(row: np.ndarray) -> np.ndarray:
    """Plain float64 log-softmax of one row, by the definition."""
    row = row.astype(np.float64)
    return row - row.max() - np.log(sum(np.exp(x - row.max()) for x in row))


@pytest.mark.parametrize("shape", [(50,), (7, 50)])
def test_log_softmax_matches_a_float64_reference(shape: tuple[int, ...]) -> None:
    values = (np.random.default_rng(0).standard_normal(shape) * 30).astype(np.float32)
    result = log_softmax(values)
    assert result.dtype == np.float64 and result.shape == shape
    np.testing.assert_allclose(np.exp(result).sum(-1), 1.0, rtol=1e-12)
    expected = np.array([_reference(row) for row in values.reshape(-1, shape[-1])]).reshape(shape)
    np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)
