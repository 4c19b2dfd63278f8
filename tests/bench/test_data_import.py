"""``bench data add/list/remove``: GitHub-style zips, folders and files imported into the data folder,
and every bad archive refused with nothing written. All inputs are written by the tests."""

from __future__ import annotations

import hashlib
import json
import stat
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from app.bench import importing, library
from app.bench.data import DATA_ENV, DataError, Dataset, Question
from app.bench.importing import ImportRefused, add, remove
from app.bench.loaders import LOADERS, Loader
from app.bench.sources import load_dataset
from tests.bench.conftest import write_block
from tests.conftest import assert_clean_error, run_cli


@pytest.fixture(autouse=True)
def data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data folder per test, and no IgakuQA clone configured (the imported copy is the default)."""
    monkeypatch.setenv("JMEDLLM_DATA_DIR", str(tmp_path / "appdata"))
    monkeypatch.delenv(DATA_ENV, raising=False)
    return tmp_path / "appdata"


def clone(root: Path, **overrides: list[str]) -> Path:
    """A tiny IgakuQA clone: data/2022 (six blocks of three questions), a baseline file and a README."""
    write_block(root, 116, "A", 3, **overrides)
    (root / "baseline_results/2022").mkdir(parents=True)
    (root / "baseline_results/2022/116-A_gpt4.jsonl").write_text('{"problem_id": "116A1", "prediction": "a"}\n')
    (root / "README.md").write_text("# IgakuQA\n")
    return root


def github_zip(folder: Path, target: Path, top: str = "IgakuQA-main") -> Path:
    """``folder`` zipped the way GitHub serves a repository: everything under ``top/``, folders listed."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{top}/", "")
        for path in sorted(folder.rglob("*")):
            arcname = f"{top}/{path.relative_to(folder).as_posix()}"
            if path.is_dir():
                zf.writestr(arcname + "/", "")
            else:
                zf.write(path, arcname)
    return target


def zip_of(target: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(target, "w", compression) as zf:
        for name, content in members.items():
            zf.writestr(zipfile.ZipInfo(name), content, compress_type=compression)
    return target


def declare_size(archive: Path, size: int) -> None:
    """Rewrite the central directory's uncompressed size of every entry (what zipfile trusts)."""
    raw = bytearray(archive.read_bytes())
    at = raw.find(b"PK\x01\x02")
    while at != -1:
        struct.pack_into("<I", raw, at + 24, size)
        at = raw.find(b"PK\x01\x02", at + 4)
    archive.write_bytes(bytes(raw))


def listing() -> list[str]:
    root = library.library_dir()
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_github_zip_is_imported_and_becomes_the_default_igakuqa(tmp_path: Path) -> None:
    source = clone(tmp_path / "src")
    archive = github_zip(source, tmp_path / "IgakuQA-main.zip")
    progress: list[tuple[int, int]] = []
    [entry] = add(archive, on_progress=lambda done, total: progress.append((done, total)))

    assert (entry.name, entry.layout, entry.set_path, entry.questions) == ("igakuqa", "igakuqa", "IgakuQA-main", 18)
    assert entry.languages == ("ja", "en") and entry.source == str(archive.resolve())
    assert entry.fingerprint == load_dataset(source).fingerprint
    assert progress and progress[-1][0] == progress[-1][1]
    assert library.find("igakuqa") == entry == library.entries()[0]
    for ref in ("igakuqa", None):
        dataset = load_dataset(ref)
        assert dataset.root == entry.path and len(dataset.questions) == 18
        assert dataset.fingerprint == entry.fingerprint
    assert (entry.path / "baseline_results/2022/116-A_gpt4.jsonl").exists()  # the whole clone is kept
    assert json.loads((entry.folder / library.MANIFEST).read_text())["fingerprint"] == entry.fingerprint
    for path in [entry.folder, *entry.folder.rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    assert not [p for p in library.library_dir().iterdir() if p.name.startswith(".")]  # no staging left


def test_a_question_bank_in_a_zips_one_top_folder_is_found(tmp_path: Path) -> None:
    bank = "id,question,choice_a,choice_b,answer\nq1,胸痛の初期検査は？,心電図,腹部CT,a\n".encode()
    [entry] = add(zip_of(tmp_path / "bank.zip", {"bank/residents.csv": bank}))
    assert (entry.name, entry.layout, entry.questions) == ("residents", "question-set", 1)


def test_folder_and_data_folder_imports(tmp_path: Path) -> None:
    source = clone(tmp_path / "IgakuQA")
    [entry] = add(source, name="mine")
    assert (entry.name, entry.set_path, entry.source) == ("mine", "IgakuQA", str(source.resolve()))
    [again] = add(source / "data", name="from-data")  # the clone's data folder means the clone
    assert again.set_path == "IgakuQA" and again.fingerprint == entry.fingerprint
    assert load_dataset("mine").fingerprint == entry.fingerprint
    assert [e.name for e in library.entries()] == ["from-data", "mine"]


def test_japanese_names_from_windows_explorers_zip_are_read_as_shift_jis(tmp_path: Path) -> None:
    """Explorer on a Japanese Windows writes names in cp932 without zip's UTF-8 flag; Python's zipfile would read
    them as cp437 (garbled). The set imports as from a zip with UTF-8 names."""
    bank = "id,question,choice_a,choice_b,answer\nq1,胸痛の初期検査は？,心電図,腹部CT,a\n".encode()
    [utf8] = add(zip_of(tmp_path / "utf8.zip", {"内科/内科問題.csv": bank}), name="from-utf8")
    explorer = zip_of(tmp_path / "explorer.zip", {"AAAA/AAAAAAAA.csv": bank})  # placeholders, as many bytes
    raw = explorer.read_bytes().replace(b"AAAA/AAAAAAAA", "内科/内科問題".encode("cp932"))
    explorer.write_bytes(raw)
    with zipfile.ZipFile(explorer) as zf:
        assert not zf.infolist()[0].flag_bits & 0x800 and zf.namelist() != ["内科/内科問題.csv"]
    [entry] = add(explorer, name="from-explorer")
    assert (entry.label, entry.set_path, entry.questions) == (utf8.label, utf8.set_path, 1)
    assert "内科問題" in entry.label


def test_a_git_checkouts_history_is_not_copied(tmp_path: Path) -> None:
    """A `git clone` of IgakuQA: its .git folder (history, possibly thousands of objects) stays out of the library."""
    source = clone(tmp_path / "IgakuQA")
    objects = source / ".git" / "objects" / "ab"
    objects.mkdir(parents=True)
    (objects / "cdef").write_bytes(b"x" * 100)
    (source / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    [entry] = add(source)
    assert not (entry.path / ".git").exists()
    assert (entry.path / "baseline_results/2022/116-A_gpt4.jsonl").exists() and entry.questions == 18


def test_an_existing_name_needs_replace_and_is_replaced_only_by_a_valid_set(tmp_path: Path) -> None:
    first = clone(tmp_path / "one")
    [old] = add(first)
    with pytest.raises(ImportRefused, match="already called igakuqa; add --replace"):
        add(first)
    broken = clone(tmp_path / "two", _translate=['{"problem_id": "116A1", '])
    with pytest.raises(ImportRefused, match=r"116-A_translate\.jsonl:1: malformed JSON"):
        add(broken, replace=True)
    assert library.find("igakuqa") == old and load_dataset("igakuqa").fingerprint == old.fingerprint
    second = clone(tmp_path / "three")
    (second / "data/2022/116-A_metadata.jsonl").write_text(
        (second / "data/2022/116-A_metadata.jsonl").read_text().replace('"test"', '"changed"'))
    [new] = add(second, replace=True)
    assert new.fingerprint != old.fingerprint and library.entries() == [new]
    assert load_dataset(None).fingerprint == new.fingerprint


def _tiny_loader(path: Path) -> Dataset:
    raw = path.read_bytes()
    rows = [json.loads(line) for line in raw.decode().splitlines()]
    questions = [Question(r["id"], 0, 0, "", r["q"], tuple(r["choices"]), "", (), (r["answer"],), 1, True)
                 for r in rows]
    return Dataset(path, questions, hashlib.sha256(raw).hexdigest(), [path.name], name="tiny", label="Tiny set",
                   layout="tiny-test", paper_choices=None)


def test_a_single_file_set_is_copied_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(LOADERS, "tiny-test", Loader(
        "tiny-test", "test layout", lambda p: [p] if p.is_file() and p.suffix == ".tiny" else [], _tiny_loader))
    path = tmp_path / "bank.tiny"
    path.write_text(json.dumps({"id": "q1", "q": "問題", "choices": ["あ", "い"], "answer": "a"}) + "\n")
    (tmp_path / "other.txt").write_text("not copied")
    [entry] = add(path)
    assert (entry.name, entry.layout, entry.set_path, entry.languages) == ("tiny", "tiny-test", "bank.tiny", ("ja",))
    assert sorted(p.name for p in (entry.folder / library.FILES).iterdir()) == ["bank.tiny"]
    assert load_dataset("tiny").questions[0].problem_id == "q1"


def test_sets_that_fail_are_all_reported_with_file_and_line(tmp_path: Path) -> None:
    bad_line = ['{"problem_id": "116A1", "problem_text_en": ']
    clone(tmp_path / "src/a", _translate=bad_line)
    clone(tmp_path / "src/b", _metadata=["[]"])
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((tmp_path / "src").rglob("*.jsonl")):
            zf.write(path, f"{path.relative_to(tmp_path / 'src').as_posix()}")
    before = listing()
    with pytest.raises(ImportRefused) as caught:
        add(archive)
    message = str(caught.value)
    assert "two.zip: a (igakuqa): 2022/116-A_translate.jsonl:1: malformed JSON" in message
    assert "two.zip: b (igakuqa): 2022/116-A_metadata.jsonl:1: not a JSON object" in message
    assert listing() == before


def _truncated(tmp_path: Path) -> Path:
    good = github_zip(clone(tmp_path / "src"), tmp_path / "good.zip")
    target = tmp_path / "IgakuQA-main.zip"
    target.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return target


def _symlink(tmp_path: Path) -> Path:
    info = zipfile.ZipInfo("IgakuQA-main/data")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    target = tmp_path / "link.zip"
    with zipfile.ZipFile(target, "w") as zf:
        zf.writestr(info, "/etc")
    return target


def _declared_bomb(tmp_path: Path) -> Path:
    target = zip_of(tmp_path / "bomb.zip", {"IgakuQA-main/big.jsonl": b"x" * 100}, zipfile.ZIP_STORED)
    declare_size(target, 3 * 1024**3)
    return target


def _lying_header(tmp_path: Path) -> Path:
    """8 MiB of zeros that the header declares as 100 bytes: passes the declared checks, caught unpacking."""
    target = zip_of(tmp_path / "liar.zip", {"IgakuQA-main/big.jsonl": bytes(8 * 1024**2)})
    declare_size(target, 100)
    return target


def _empty_folder(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def _written(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _text_file(tmp_path: Path) -> Path:
    (tmp_path / "notes.txt").write_text("just some notes\n")
    return tmp_path / "notes.txt"


def _renamed_text(tmp_path: Path) -> Path:
    (tmp_path / "IgakuQA-main.zip").write_text("<html>404 Not Found</html>\n")
    return tmp_path / "IgakuQA-main.zip"


REFUSALS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "renamed text file": (_renamed_text, r"IgakuQA-main\.zip: not a zip archive, or a damaged \(truncated\?\) one"),
    "truncated zip": (_truncated, "not a zip archive, or a damaged"),
    "traversal": (lambda t: zip_of(t / "evil.zip", {"IgakuQA-main/../../evil": b"x"}),
                  r"unsafe entries: IgakuQA-main/\.\./\.\./evil \(goes outside the archive's folder\)"),
    "backslash traversal": (lambda t: zip_of(t / "evil.zip", {"..\\evil": b"x"}), "goes outside"),
    "absolute path": (lambda t: zip_of(t / "abs.zip", {"/etc/evil": b"x"}), r"/etc/evil \(an absolute path\)"),
    "symlink": (_symlink, r"IgakuQA-main/data \(a symbolic link\)"),
    "declared bomb": (_declared_bomb, r"bomb\.zip: unpacks to 3\.0 GiB, more than 2\.0 GiB"),
    "ratio bomb": (lambda t: zip_of(t / "zeros.zip", {"a/z.jsonl": bytes(8 * 1024**2)}),
                   r"a/z\.jsonl unpacks \d+ times its packed size \(a zip bomb\?\)"),
    "lying header": (_lying_header, r"big\.jsonl is damaged \(Bad CRC-32"),
    "wrong layout zip": (lambda t: zip_of(t / "repo.zip", {"repo-main/README.md": b"# hi"}),
                         "repo.zip: no question set in a known layout in the archive. Known layouts:\n  harness:"),
    "empty zip": (lambda t: zip_of(t / "nothing.zip", {}), "nothing.zip is empty"),
    "missing path": (lambda t: t / "nowhere", "nowhere: no such file or folder"),
    "empty folder": (_empty_folder, "empty is empty: no question set to import"),
    "unknown file": (_text_file, r"notes\.txt: no question set in a known layout"),
    "empty file": (lambda t: _written(t / "empty.csv", b""), r"empty\.csv: the file is empty; no question set to"),
    "blank lines": (lambda t: _written(t / "bank.jsonl", b"\xef\xbb\xbf\r\n  \n\n"), r"bank\.jsonl: the file is empty"),
    "empty zip file": (lambda t: _written(t / "IgakuQA-main.zip", b""), r"IgakuQA-main\.zip: the file is empty"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_with_nothing_written(tmp_path: Path, case: str) -> None:
    make, message = REFUSALS[case]
    path = make(tmp_path)
    before = listing()
    with pytest.raises(ImportRefused, match=message):
        add(path)
    assert listing() == before == []


def test_an_upload_is_named_by_its_own_file_name_not_the_servers_copy(tmp_path: Path) -> None:
    copy = tmp_path / "uploads-x" / ("ab" * 32) / "residents.csv"  # where the server keeps an upload
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"id,question,choice_a,choice_b,answer\r\nq1,Which?,yes,no,c\r\n")
    with pytest.raises(ImportRefused) as caught:
        add(copy, shown_as="residents.csv")
    assert str(caught.value).splitlines()[1].startswith("residents.csv (question-set): residents.csv row 2 (q1): ")
    assert "uploads-x" not in str(caught.value)
    copy.write_bytes(b"")
    with pytest.raises(ImportRefused, match="^residents\\.csv: the file is empty; no question set to import$"):
        add(copy, shown_as="residents.csv")
    copy.write_bytes(b"id,question,choice_a,choice_b,answer\r\nq1,Which?,yes,no,a\r\n")
    [entry] = add(copy, shown_as="residents.csv")
    assert (entry.name, entry.source) == ("residents", "residents.csv")
    assert run_cli("bench", "data", "list").stdout.rstrip().endswith(" residents.csv")
    archive = github_zip(clone(tmp_path / "src"), copy.parent / "IgakuQA-main.zip")
    [entry] = add(archive, shown_as="IgakuQA-main.zip")
    assert entry.source == "IgakuQA-main.zip"


def test_limits_on_files_and_single_file_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importing, "MAX_FILES", 5)
    many = zip_of(tmp_path / "many.zip", {f"r/{i}.jsonl": b"{}" for i in range(6)})
    with pytest.raises(ImportRefused, match="many.zip: 6 entries, more than 5"):
        add(many)
    with pytest.raises(ImportRefused, match="more than 5 files"):
        add(clone(tmp_path / "clone"))
    monkeypatch.setattr(importing, "MAX_FILE_BYTES", 10)
    with pytest.raises(ImportRefused, match=r"huge\.jsonl: 0\.0 MiB, too large for a question file"):
        add(_text_file(tmp_path).rename(tmp_path / "huge.jsonl"))
    assert listing() == []


def test_links_in_a_folder(tmp_path: Path) -> None:
    source = clone(tmp_path / "src")
    (tmp_path / "notes.md").write_text("outside the clone")
    (source / "NOTES.md").symlink_to(tmp_path / "notes.md")
    [entry] = add(source)
    copied = entry.path / "NOTES.md"
    assert not copied.is_symlink() and copied.read_text() == "outside the clone"  # a linked file is copied
    (source / "more").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(ImportRefused, match=r"src/more is a link to a folder"):
        add(source, replace=True)


def test_bad_names_and_sets_named_twice(tmp_path: Path) -> None:
    source = clone(tmp_path / "src")
    with pytest.raises(ImportRefused, match="Invalid name 'Bad Name'"):
        add(source, name="Bad Name")
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for top in ("x", "y"):
            for path in sorted(source.rglob("*.jsonl")):
                zf.write(path, f"{top}/{path.relative_to(source).as_posix()}")
    with pytest.raises(ImportRefused, match="holds 2 question sets and --name names one"):
        add(archive, name="one")
    assert [e.name for e in add(archive)] == ["igakuqa-x", "igakuqa-y"]


def test_leftovers_of_a_killed_import_are_cleaned(tmp_path: Path) -> None:
    leftover = library.library_dir() / ".import-killed"
    (leftover / "in").mkdir(parents=True)
    (leftover / "in/half.jsonl").write_text("{")
    assert library.entries() == []  # never listed
    add(clone(tmp_path / "src"))
    assert not leftover.exists()


def test_remove(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"No imported set named 'igakuqa' \(imported: none\)"):
        remove("igakuqa")
    [entry] = add(clone(tmp_path / "src"), name="kept")
    assert remove("kept") == entry
    assert library.entries() == [] and listing() == []


def test_cli_add_list_remove(tmp_path: Path) -> None:
    archive = github_zip(clone(tmp_path / "src"), tmp_path / "IgakuQA-main.zip")
    result = run_cli("bench", "data", "add", str(archive))
    assert result.returncode == 0, result.stderr
    assert "Imported igakuqa: IgakuQA, 18 questions (ja, en), layout igakuqa" in result.stdout
    assert "jmedllm bench run --data igakuqa" in result.stdout
    assert_clean_error(run_cli("bench", "data", "add", str(archive)), "already called igakuqa", "--replace")
    assert run_cli("bench", "data", "add", str(archive), "--replace").returncode == 0
    evil = zip_of(tmp_path / "evil.zip", {"../evil": b"x"})
    assert_clean_error(run_cli("bench", "data", "add", str(evil)), "evil.zip: refused, unsafe entries: ../evil")
    listed = run_cli("bench", "data", "list")
    assert listed.returncode == 0 and "igakuqa" in listed.stdout and "IgakuQA-main.zip" in listed.stdout
    [row] = json.loads(run_cli("bench", "data", "list", "--json").stdout)
    assert (row["name"], row["questions"], row["languages"]) == ("igakuqa", 18, ["ja", "en"])
    assert "Removed igakuqa" in run_cli("bench", "data", "remove", "igakuqa").stdout
    assert_clean_error(run_cli("bench", "data", "remove", "igakuqa"), "No imported set named 'igakuqa'")
    assert "No imported question sets yet" in run_cli("bench", "data", "list").stdout
    bank = tmp_path / "ward.csv"
    bank.write_text("id,question,choice_a,choice_b,answer\nq1,発熱の原因は？,感染,外傷,a\n", encoding="utf-8")
    assert "Imported ward: ward, 1 question (ja)" in run_cli("bench", "data", "add", str(bank)).stdout
    assert "(ward, 1 question)." in run_cli("bench", "data", "remove", "ward").stdout

