"""Loader and validation: the real IgakuQA data, and malformed copies written to tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.bench.data import DataError, normalize_letters, resolve_data_dir
from app.bench.sources import load_dataset
from tests.bench.conftest import write_block


def test_real_data_facts(dataset) -> None:
    qs = dataset.questions
    assert len(qs) == 2000
    assert {q.exam for q in qs} == {112, 113, 114, 115, 116}
    assert sum(1 for q in qs if not q.choices_ja) == 12
    assert sum(1 for q in qs if q.n_choices in (6, 8)) == 4
    assert sum(1 for q in qs if not q.text_only) == 529
    assert sum(1 for q in qs if len(q.answer) in (2, 3)) == 298
    by_id = dataset.by_id()
    assert by_id["112B30"].answer == ("a or d",)
    assert by_id["116A1"].choices_en[2] == "Alpha-blockers are the first-choice drug."
    assert by_id["116A1"].category == "呼吸器"
    assert 60 <= sum(q.en_refusal for q in qs) <= 120  # ~90 refused translations, flagged
    assert all(set(q.kinki) <= set("abcdefgh") for q in qs)
    assert len(dataset.fingerprint) == 64 and len(dataset.files) == 90


def test_fingerprint_is_stable_and_changes_with_the_data(tmp_path: Path) -> None:
    root = write_block(tmp_path / "d")
    first = load_dataset(root).fingerprint
    assert load_dataset(root).fingerprint == first
    path = root / "data/2022/116-A_metadata.jsonl"
    path.write_text(path.read_text().replace('"test"', '"changed"'))
    assert load_dataset(root).fingerprint != first


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    good = [json.dumps({"problem_id": f"116A{i}", "problem_text_en": "q", "choices_en": list("abcde"),
                        "answer": ["a"]}) for i in (1, 2, 3)]
    root = write_block(tmp_path, _translate=[good[0], '{"problem_id": "116A2", "problem_text_en": ', good[2]])
    with pytest.raises(DataError, match=r"2022/116-A_translate\.jsonl:2: malformed JSON"):
        load_dataset(root)


def test_mismatched_problem_ids(tmp_path: Path) -> None:
    meta = [json.dumps({"problem_id": pid, "category": "x", "kinki": []}) for pid in ("116A1", "116A3", "116A2")]
    root = write_block(tmp_path, _metadata=meta)
    with pytest.raises(DataError, match=r"116-A_metadata\.jsonl:2: problem_id '116A3' does not match '116A2'"):
        load_dataset(root)


def test_missing_file_and_missing_field(tmp_path: Path) -> None:
    root = write_block(tmp_path / "one")
    (root / "data/2022/116-A_metadata.jsonl").unlink()
    with pytest.raises(DataError, match=r"116-A_metadata\.jsonl: file missing"):
        load_dataset(root)
    bad = [json.dumps({"problem_id": "116A1", "problem_text": "x", "text_only": True, "answer": ["a"],
                       "points": "1"})]
    # "" (the Japanese file) is no identifier, so only ** can pass it; mypy matches the dict to every parameter
    root = write_block(tmp_path / "two", n=1, **{"": bad})  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"116-A\.jsonl:1: 116A1 has no 'choices'"):
        load_dataset(root)


def test_missing_folder_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match=r"(?s)https://github.com/jungokasai/IgakuQA.*jmedllm bench data add"):
        resolve_data_dir(tmp_path / "nowhere")
    root = write_block(tmp_path / "env")
    monkeypatch.setenv("JMEDLLM_IGAKUQA_DIR", str(root))
    assert resolve_data_dir() == root
    assert resolve_data_dir(root / "data") == root


def test_an_installed_app_does_not_name_a_checkouts_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed, the place beside the packages (<prefix>/lib/python3.x/shared/igakuqa) means nothing to an
    administrator; in a checkout, ../shared/igakuqa is where developers keep IgakuQA."""
    monkeypatch.delenv("JMEDLLM_IGAKUQA_DIR", raising=False)
    monkeypatch.setenv("JMEDLLM_DATA_DIR", str(tmp_path / "data"))
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    monkeypatch.setattr("app.bench.data.PROJECT_ROOT", site)
    with pytest.raises(DataError) as installed:
        resolve_data_dir()
    assert "looked in" not in str(installed.value) and "jmedllm bench data add" in str(installed.value)
    (site / "pyproject.toml").write_text("")
    with pytest.raises(DataError, match=f"looked in {tmp_path / 'lib' / 'python3.11' / 'shared' / 'igakuqa'}"):
        resolve_data_dir()


def test_normalize_letters() -> None:
    assert normalize_letters(["de"]) == ("d", "e")
    assert normalize_letters(["ｂ"]) == ("b",)
    assert normalize_letters([]) == ()
