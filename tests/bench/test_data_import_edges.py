"""``bench data add`` with the files hospital IT actually has at hand: a tarball instead of a zip, a
spreadsheet export that is not quite the documented format. Each is refused with a message that says
what is wrong and what to do, and nothing is written. All inputs are written by the tests."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zipfile
from pathlib import Path

import pytest

from app.bench import library
from app.bench.data import DATA_ENV
from app.bench.importing import ImportRefused, add
from tests.conftest import assert_clean_error, run_cli

GOOD_CSV = "id,question,choice_a,choice_b,answer\r\nq1,Which?,yes,no,a\r\n"


@pytest.fixture(autouse=True)
def data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data folder per test (the CLI's subprocess inherits it), no IgakuQA clone configured."""
    monkeypatch.setenv("JMEDLLM_DATA_DIR", str(tmp_path / "appdata"))
    monkeypatch.delenv(DATA_ENV, raising=False)
    return tmp_path / "appdata"


def tarball() -> bytes:
    """A tar holding one valid question-set CSV."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("bank/bank.csv")
        info.size = len(GOOD_CSV)
        tar.addfile(info, io.BytesIO(GOOD_CSV.encode()))
    return buffer.getvalue()


ARCHIVES = {
    "IgakuQA-main.tar.gz": (gzip.compress(tarball()), "gzip"),
    "bank.tar": (tarball(), "tar"),
    "bank.tar.bz2": (bz2.compress(tarball()), "bzip2"),
    "bank.tar.xz": (lzma.compress(tarball()), "xz"),
    "bank.csv.gz": (gzip.compress(GOOD_CSV.encode()), "gzip"),
    "bank.csv.bz2": (bz2.compress(GOOD_CSV.encode()), "bzip2"),
    "bank.csv.xz": (lzma.compress(GOOD_CSV.encode()), "xz"),
    "bank.7z": (b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(32), "7-Zip"),
    "bank.rar": (b"Rar!\x1a\x07\x01\x00" + bytes(32), "RAR"),
}


def assert_refused(folder: Path, file_name: str, content: bytes, pattern: str) -> None:
    """``content`` saved as ``file_name`` is refused with a message matching ``pattern``, and nothing imported."""
    path = folder / file_name
    path.write_bytes(content)
    with pytest.raises(ImportRefused, match=pattern):
        add(path)
    assert library.entries() == []


@pytest.mark.parametrize("file_name", list(ARCHIVES))
def test_an_archive_that_is_not_a_zip_says_to_unpack_it(tmp_path: Path, file_name: str) -> None:
    content, kind = ARCHIVES[file_name]
    assert_refused(tmp_path, file_name, content, rf"{file_name}: a {kind} archive; only zip archives are imported\. "
                                                 r"Unpack it first \(tar xf, 7z x, \.\.\.\) and import the folder")


def test_a_tarball_at_the_console_is_one_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "IgakuQA-main.tar.gz"
    path.write_bytes(gzip.compress(tarball()))
    assert_clean_error(run_cli("bench", "data", "add", str(path)), "a gzip archive; only zip archives are imported")


NOT_QUITE = {  # a spreadsheet export no layout claims: read as a question set, so the problem is named
    "no answer column": ("bank.csv", b"id,question,choice_a,choice_b\r\nq1,Which?,yes,no\r\n",
                         r"bank\.csv row 1: no answer column in the header"),
    "no id column": ("bank.csv", b"question,choice_a,choice_b,answer\r\nWhich?,yes,no,a\r\n",
                     r"bank\.csv row 1: no id column in the header"),
    "UTF-16 (Excel's Unicode text)": ("bank.csv", "id\tquestion\r\n".encode("utf-16"),
                                      r"bank\.csv:1: not valid UTF-8 \(byte 0xff\)"),
    "JSONL with the choices as options": (
        "bank.jsonl", b'{"id": "q1", "question": "Which?", "options": ["yes", "no"], "answer": "a"}\n',
        r"bank\.jsonl:1 \(q1\): unknown field 'options'"),
}


@pytest.mark.parametrize("case", list(NOT_QUITE))
def test_a_csv_or_jsonl_in_no_layout_is_read_as_a_question_set_to_say_why(tmp_path: Path, case: str) -> None:
    file_name, content, message = NOT_QUITE[case]
    assert_refused(tmp_path, file_name, content, rf"Not imported; the question set could not be read:\n"
                                                 rf".*{file_name} \(question-set\): (.|\n)*{message}")


def test_a_question_set_whose_first_line_is_long_is_imported(tmp_path: Path) -> None:
    """The format sniffer reads the first 64 KiB; a longer first record is still a question set."""
    path = tmp_path / "long.jsonl"
    path.write_text('{"id": "q1", "question": "' + "x" * 70_000 + '", "choices": ["yes", "no"], "answer": "a"}\n')
    assert [(e.name, e.questions) for e in add(path)] == [("long", 1)]


EXCEL_EXPORTS = {  # what Excel's other "save as" choices write, refused with the one to choose instead
    "Unicode text (UTF-16, tabs)": ("bank.csv", "id\tquestion\tchoice_a\tchoice_b\tanswer\r\n".encode("utf-16"),
                                    r"bank\.csv:1: not valid UTF-8 \(byte 0xff\); save the file as UTF-8\. It is "
                                    r"UTF-16 \(Excel's \"Unicode テキスト\", Windows PowerShell's default\): "
                                    r"save it as UTF-8 \(Excel: \"CSV UTF-8 \(コンマ区切り\)\"\)"),
    "UTF-16 JSONL (PowerShell)": ("bank.jsonl", '{"id": "q1"}\r\n'.encode("utf-16"), r"It is UTF-16"),
    "semicolons": ("bank.csv", b"id;question;choice_a;choice_b;answer\r\nq1;Which?;yes;no;a\r\n",
                   r"bank\.csv row 1: the columns are separated by semicolons or tabs, not commas; save it as "
                   r"\"CSV UTF-8 \(コンマ区切り\)\"$"),
    "tabs in UTF-8": ("bank.csv", b"id\tquestion\tchoice_a\tchoice_b\tanswer\r\nq1\tWhich?\tyes\tno\ta\r\n",
                      r"bank\.csv row 1: the columns are separated by semicolons or tabs, not commas"),
}


@pytest.mark.parametrize("case", list(EXCEL_EXPORTS))
def test_excels_other_formats_say_which_to_save_as(tmp_path: Path, case: str) -> None:
    file_name, content, message = EXCEL_EXPORTS[case]
    assert_refused(tmp_path, file_name, content, message)


def test_sets_whose_names_clash_are_told_to_be_imported_one_by_one(tmp_path: Path) -> None:
    """Two files named alike but for case give the same name twice; --name cannot name two sets."""
    archive = tmp_path / "banks.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("bank.csv", GOOD_CSV)
        zf.writestr("BANK.csv", GOOD_CSV)
    with pytest.raises(ImportRefused, match=r"banks\.zip: cannot name the set 'bank-bank'; import each set from its "
                                            r"own file or folder, with --name$"):
        add(archive)
    assert library.entries() == []


def test_a_cell_over_the_csv_limit_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "bank.csv"
    path.write_text("id,question,choice_a,choice_b,answer\r\nq1,Which?,yes,no,a\r\nq2," + "x" * 200_000 + ",y,n,a\r\n")
    with pytest.raises(ImportRefused, match=r"bank\.csv row 3: a cell longer than 131,072 characters; no question or "
                                            r"choice is that long: check this row$"):
        add(path)
    assert library.entries() == []
