"""The documented question-set format (docs/question_sets.md): JSONL and CSV files written here, as a
hospital would keep its residents' exam; validation names file and line, a scripted run reads them."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from app.bench.data import DataError
from app.bench.loaders import discover, load_path
from app.bench.loaders.question_set import LAYOUT, find_question_sets, load_question_set, set_name
from app.bench.prompting import build_prompt
from app.bench.runner import RunConfig, plan, run_benchmark
from app.bench.sets import SetSpec
from app.bench.sources import load_dataset
from tests.scripted_engine import ScriptedEngine

CSV_HEADER = ("id,question,choice_a,choice_b,choice_c,choice_d,choice_e,answer,translation_question,"
              "translation_choice_a,translation_choice_b,translation_choice_c,translation_choice_d,"
              "translation_choice_e,category,points,contraindicated,explanation,language")

GOOD_JSONL = [
    {"id": "r2024-1", "question": "急性心筋梗塞で最初に上昇する心筋マーカーはどれか。",
     "choices": ["ミオグロビン", "CK-MB", "トロポニンT", "LDH", "AST"], "answer": "a", "category": "循環器",
     "points": 3, "contraindicated": "e", "explanation": "ミオグロビンは発症後1-2時間で上昇する。",
     "translation": {"question": "Which cardiac marker rises first in acute myocardial infarction?",
                     "choices": ["Myoglobin", "CK-MB", "Troponin T", "LDH", "AST"]}},
    {"id": "r2024-2", "question": "Which two drugs are loop diuretics?",
     "choices": ["Furosemide", "Spironolactone", "Bumetanide", "Hydrochlorothiazide"], "answer": ["a", "c"]},
    {"id": 3, "question": "成人の正常な安静時心拍数は60-100回/分である。", "choices": ["正しい", "誤り"],
     "answer": "A", "language": "ja"},
    {"id": "r2024-4", "question": "ショックの初期対応で正しいのはどれか。2つ選べ。",
     "choices": ["輸液", "酸素投与", "経過観察", "帰宅", "鎮静", "下肢挙上", "絶食", "湿布"],
     "answer": "ａ，ｂ", "contraindicated": ["d"]},
]


def write_jsonl(path: Path, rows: list, bom: bool = False) -> Path:
    text = "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def write_csv(path: Path, lines: list[str], bom: bool = True, header: str = CSV_HEADER) -> Path:
    """A CSV as Excel's "CSV UTF-8" writes it: a byte-order mark and CRLF line ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + "\r\n".join([header, *lines, ""]).encode("utf-8"))
    return path


GOOD_CSV = [
    'q1,腹痛を訴える患者で最初に行う検査はどれか。,血液検査,腹部超音波,CT,MRI,内視鏡,b,'
    'Which test comes first for a patient with abdominal pain?,Blood test,Abdominal ultrasound,CT,MRI,Endoscopy,'
    '消化器,2,"d, e",',
    ',,,,,,,,,,,,,,,,,',  # an empty row Excel leaves: skipped
    'q2,"Which of the following\nare beta-blockers?",Propranolol,Amlodipine,Metoprolol,Losartan,,"A, C",,,,,,,'
    'Pharmacology,,,"Cell with a comma, and a\nline break"',
    'q3,2択問題,はい,いいえ,,,,Ｂ,,,,,,,,,,',
]


def test_jsonl_reads_every_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "Residents 2024.jsonl", GOOD_JSONL, bom=True)
    data = load_question_set(path)
    assert (data.name, data.label, data.layout, data.paper_choices) == ("residents-2024", "Residents 2024", LAYOUT,
                                                                        None)
    assert data.files == ["Residents 2024.jsonl"] and data.root == path
    assert data.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()
    q1, q2, q3, q4 = data.questions
    assert q1.text_ja.startswith("急性心筋梗塞") and q1.choices_en[2] == "Troponin T" and q1.languages == ("ja", "en")
    assert (q1.answer, q1.kinki, q1.points, q1.category, q1.source) == (("a",), ("e",), 3, "循環器",
                                                                         "Residents 2024.jsonl:1")
    assert (q1.exam, q1.block, q1.text_only, q1.n_choices) == (0, "", True, 5)
    assert q2.languages == ("en",) and q2.text_ja == "" and q2.answer == ("a", "c") and q2.points == 1
    assert q3.problem_id == "3" and q3.answer == ("a",) and q3.n_choices == 2 and q3.languages == ("ja",)
    assert q4.n_choices == 8 and q4.answer == ("a", "b") and q4.kinki == ("d",)
    assert data.languages == ("ja", "en")


def test_csv_from_excel_with_bom_quoted_cells_and_empty_rows(tmp_path: Path) -> None:
    data = load_question_set(write_csv(tmp_path / "bank.csv", GOOD_CSV))
    assert [q.problem_id for q in data.questions] == ["q1", "q2", "q3"]
    q1, q2, q3 = data.questions
    assert q1.choices_ja == ("血液検査", "腹部超音波", "CT", "MRI", "内視鏡")
    assert q1.choices_en[1] == "Abdominal ultrasound"
    assert (q1.answer, q1.kinki, q1.points, q1.category) == (("b",), ("d", "e"), 2, "消化器")
    assert q2.text_en == "Which of the following\nare beta-blockers?" and q2.n_choices == 4 and q2.answer == ("a", "c")
    assert q2.languages == ("en",) and q2.source == "bank.csv row 4"  # the empty row 3 is skipped
    assert q3.n_choices == 2 and q3.answer == ("b",) and q3.source == "bank.csv row 5"


def test_csv_needs_only_the_required_columns_in_any_order(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "short.csv", ["b,1,x,y,z"], bom=False, header="Answer, ID ,choice_a,choice_b,question")
    (q,) = load_question_set(path).questions
    assert (q.problem_id, q.text_en, q.choices_en, q.answer) == ("1", "z", ("x", "y"), ("b",))


def test_fingerprint_is_the_file_bytes_wherever_it_lies(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a" / "bank.csv", GOOD_CSV)
    copy = tmp_path / "b" / "研修医試験.csv"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    first, second = load_question_set(path), load_question_set(copy)
    assert first.fingerprint == second.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()
    assert second.name == set_name("研修医試験") and second.name.startswith("set-") and second.label == "研修医試験"
    path.write_bytes(path.read_bytes().replace(b"q3", b"q9"))
    assert load_question_set(path).fingerprint != first.fingerprint


@pytest.mark.parametrize(("stem", "name"), [("Residents 2024", "residents-2024"), ("ＯＳＣＥ_模試-v2", "osce_-v2"),
                                            ("..hidden..", "hidden"), ("A" * 80, "a" * 64)])
def test_set_names_are_benchmark_ids(stem: str, name: str) -> None:
    assert set_name(stem) == name


def test_find_claims_only_files_in_this_format(tmp_path: Path) -> None:
    folder = tmp_path / "sets"
    ours_jsonl = write_jsonl(folder / "bank.jsonl", GOOD_JSONL)
    ours_csv = write_csv(folder / "bank2.csv", GOOD_CSV)
    (folder / "anatomy_test.csv").write_text('"What is the largest organ?",Skin,Liver,Heart,Lung,A\n')  # MMLU
    write_jsonl(folder / "116-A.jsonl", [{"problem_id": "116A1", "problem_text": "問", "choices": ["a", "b"],
                                          "answer": ["a"]}])  # IgakuQA / harness: problem_id, problem_text
    write_jsonl(folder / "other.jsonl", [{"id": "1", "question": "q", "choices": ["x", "y"], "answer": ["x"],
                                          "context": ""}])  # another layout with a field outside ours
    (folder / "notes.txt").write_text("id,question,choice_a,answer\n")
    write_csv(folder / "sub" / "deeper.csv", GOOD_CSV)
    assert find_question_sets(folder) == [ours_jsonl, ours_csv]
    assert find_question_sets(ours_csv) == [ours_csv] and find_question_sets(folder / "anatomy_test.csv") == []
    assert [(x.name, p) for x, p in discover(folder) if x.name == LAYOUT] == [(LAYOUT, ours_jsonl), (LAYOUT, ours_csv)]
    assert load_path(ours_csv).layout == LAYOUT and load_dataset(str(ours_jsonl)).name == "bank"
    with pytest.raises(DataError, match="question-set files"):
        load_question_set(folder)
    assert load_question_set(folder / "sub").name == "deeper"


def test_a_broken_file_is_still_claimed_so_its_problems_are_shown(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bank.jsonl", ['{"id": "1", "question": "q", "choices": ["a", "b"], "answer": '])
    assert find_question_sets(path) == [path]
    with pytest.raises(DataError, match=r"bank\.jsonl:1: malformed JSON"):
        load_path(path)


def row(**fields: object) -> dict:
    base: dict = {"id": "x1", "question": "Which is right?", "choices": ["yes", "no", "maybe"], "answer": "a"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


OK = json.dumps(row(id="ok"))
JSONL_CASES = [
    ([OK, json.dumps(row(answer=None))], "bank.jsonl:2 (x1): no answer"),
    ([OK, json.dumps(row(answer=""))], "bank.jsonl:2 (x1): no answer"),
    ([OK, json.dumps(row(answer="d"))], "bank.jsonl:2 (x1): answer letter 'd' is beyond the 3 choices (a-c)"),
    ([OK, json.dumps(row(answer="a or b"))], "bank.jsonl:2 (x1): answer 'or' is not a choice letter"),
    ([OK, json.dumps(row(answer=1))], "bank.jsonl:2 (x1): answer is not letters"),
    ([OK, json.dumps(row(id="ok"))], "bank.jsonl:2 (ok): duplicate id 'ok' (first at bank.jsonl:1)"),
    ([OK, json.dumps(row(choices=["only"]))], "bank.jsonl:2 (x1): 1 choice; a question needs 2 to 8"),
    ([OK, json.dumps(row(choices=list("abcdefghi")))], "bank.jsonl:2 (x1): 9 choices; a question needs 2 to 8"),
    ([OK, json.dumps(row(choices=None))], "bank.jsonl:2 (x1): no choices"),
    ([OK, json.dumps(row(choices="a,b"))], "bank.jsonl:2 (x1): choices are not a list of texts"),
    ([OK, json.dumps(row(choices=["a", " ", "c"]))], "bank.jsonl:2 (x1): choice b is empty"),
    ([OK, json.dumps(row(question="  "))], "bank.jsonl:2 (x1): question is empty"),
    ([OK, json.dumps(row(id=None))], "bank.jsonl:2: id is empty"),
    ([OK, "", json.dumps(row(contraindicated="a"))], "bank.jsonl:3 (x1): choice a is both the answer and contra"),
    ([OK, json.dumps(row(contraindicated="e"))], "bank.jsonl:2 (x1): contraindicated letter 'e' is beyond"),
    ([OK, json.dumps(row(points="two"))], "bank.jsonl:2 (x1): points 'two' is not a whole number"),
    ([OK, json.dumps(row(language="jp"))], "bank.jsonl:2 (x1): language 'jp' is neither"),
    ([OK, json.dumps(row(catgory="x"))], "bank.jsonl:2 (x1): unknown field 'catgory' (known fields: id, question"),
    ([OK, json.dumps(row(translation={"question": "問", "choices": ["はい", "いいえ"]}))],
     "bank.jsonl:2 (x1): the translation has 2 choices, the question 3"),
    ([OK, json.dumps(row(translation="問"))], "bank.jsonl:2 (x1): translation is not an object"),
    ([OK, json.dumps(row(translation={"choices": ["a", "b", "c"]}))], "bank.jsonl:2 (x1): translation question is"),
    ([OK, '{"id": "x2", "question": "q",'], "bank.jsonl:2: malformed JSON"),
    ([OK, '["x2", "q"]'], "bank.jsonl:2: not a JSON object (found list)"),
]


@pytest.mark.parametrize(("lines", "message"), JSONL_CASES)
def test_each_jsonl_problem_names_file_and_line(tmp_path: Path, lines: list[str], message: str) -> None:
    with pytest.raises(DataError) as caught:
        load_question_set(write_jsonl(tmp_path / "bank.jsonl", lines))
    assert str(caught.value).startswith(message), str(caught.value)


def csv_line(*extra: str, **values: str) -> str:
    """One CSV line of CSV_HEADER's columns: a two-choice question "x1" with ``values`` changed ("" empties
    a cell), then ``extra`` cells past the header."""
    cells = {"id": "x1", "question": "Which?", "choice_a": "yes", "choice_b": "no", "answer": "a", **values}
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([cells.get(c, "") for c in CSV_HEADER.split(",")] + list(extra))
    return out.getvalue()


OK_CSV = csv_line(id="ok")
CSV_CASES = [
    ([OK_CSV, csv_line(answer="")], "bank.csv row 3 (x1): no answer"),
    ([OK_CSV, csv_line(answer="c")], "bank.csv row 3 (x1): answer letter 'c' is beyond the 2 choices (a-b)"),
    ([OK_CSV, csv_line(id="ok")], "bank.csv row 3 (ok): duplicate id 'ok' (first at bank.csv row 2)"),
    ([OK_CSV, csv_line(choice_b="")], "bank.csv row 3 (x1): 1 choice; a question needs 2 to 8"),
    ([OK_CSV, csv_line(choice_b="", choice_c="maybe")], "bank.csv row 3: choice_b empty but choice_c filled"),
    ([OK_CSV, csv_line(question="")], "bank.csv row 3 (x1): question is empty"),
    ([OK_CSV, csv_line(id="")], "bank.csv row 3: id is empty"),
    ([OK_CSV, csv_line(points="1.5")], "bank.csv row 3 (x1): points '1.5' is not a whole number"),
    ([OK_CSV, csv_line(language="fr")], "bank.csv row 3 (x1): language 'fr' is neither"),
    ([OK_CSV, csv_line("stray")], "bank.csv row 3: a value in column 20, which has no name in the header"),
    ([OK_CSV, csv_line(translation_question="問", translation_choice_a="はい")],
     "bank.csv row 3 (x1): 1 translation choice; a question needs 2 to 8"),
    ([OK_CSV, csv_line(translation_question="問", translation_choice_a="はい", translation_choice_b="いいえ",
                       translation_choice_c="たぶん")],
     "bank.csv row 3 (x1): the translation has 3 choices, the question 2"),
    ([OK_CSV, csv_line(translation_choice_a="はい", translation_choice_b="いいえ")],
     "bank.csv row 3 (x1): translation question is empty"),
    ([OK_CSV, csv_line(contraindicated="a")], "bank.csv row 3 (x1): choice a is both the answer and contraindicated"),
]


@pytest.mark.parametrize(("lines", "message"), CSV_CASES)
def test_each_csv_problem_names_file_and_spreadsheet_row(tmp_path: Path, lines: list[str], message: str) -> None:
    with pytest.raises(DataError) as caught:
        load_question_set(write_csv(tmp_path / "bank.csv", lines))
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize(("header", "message"), [
    ("id,question,choice_a,choice_b,answer,notes", "bank.csv row 1: unknown column 'notes' (known columns: id,"),
    ("id,question,choice_a,choice_b", "bank.csv row 1: no answer column in the header"),
    ("id,question,choice_a,choice_b,answer,ID", "bank.csv row 1: column id appears more than once"),
])
def test_a_bad_header_is_reported_on_row_one(tmp_path: Path, header: str, message: str) -> None:
    with pytest.raises(DataError, match="^" + re.escape(message)):
        load_question_set(write_csv(tmp_path / "bank.csv", ["1,q,a,b,a"], header=header))


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    lines = [OK_CSV, csv_line(question=""), csv_line(id="x2", answer="f"), csv_line(id="ok"),
             csv_line(id="x4", answer="", points="two")]
    with pytest.raises(DataError) as caught:
        load_question_set(write_csv(tmp_path / "bank.csv", lines))
    message = str(caught.value)
    assert message.startswith("bank.csv: 5 problems; fix them all and import again:\n")
    for expected in ("bank.csv row 3 (x1): question is empty", "bank.csv row 4 (x2): answer letter 'f'",
                     "bank.csv row 5 (ok): duplicate id", "bank.csv row 6 (x4): no answer",
                     "bank.csv row 6 (x4): points 'two'"):
        assert f"\n  {expected}" in message


def test_a_quote_left_open_is_named_and_the_rows_after_it_are_still_checked(tmp_path: Path) -> None:
    lines = [OK_CSV, 'm2,"unterminated quote line,a,b,a', csv_line(id="m3", answer="z"), csv_line(id="m4")]
    with pytest.raises(DataError) as caught:
        load_question_set(write_csv(tmp_path / "bank.csv", lines))
    message = str(caught.value)
    assert message.startswith("bank.csv: 2 problems")
    assert '\n  bank.csv row 3: a quote (") opened in this row is never closed, which would read the rows after it' \
           in message
    assert "\n  bank.csv row 4 (m3): answer 'z' is not a choice letter" in message  # not swallowed by row 3
    assert "no choices" not in message


def test_a_quote_left_open_in_a_long_file_or_the_header_is_named(tmp_path: Path) -> None:
    lines = [OK_CSV, 'm2,"unterminated', *(csv_line(id=f"q{i}") for i in range(3000)), csv_line(id="last", answer="z")]
    with pytest.raises(DataError) as caught:  # the open cell would outgrow csv's size limit
        load_question_set(write_csv(tmp_path / "bank.csv", lines))
    assert str(caught.value).splitlines()[1:] == [
        '  bank.csv row 3: a quote (") opened in this row is never closed, which would read the rows after it into '
        'one cell; close it (a quote inside a cell is written "")',
        "  bank.csv row 3004 (last): answer 'z' is not a choice letter (write letters a-h separated by commas, "
        'e.g. "a,c")']
    with pytest.raises(DataError, match=r'^bank\.csv row 1: a quote \(\"\) opened in this row is never closed'):
        load_question_set(write_csv(tmp_path / "bank.csv", [OK_CSV], header='"id,question,choice_a,choice_b,answer'))


def test_quoted_cells_over_several_lines_are_not_taken_for_an_open_quote(tmp_path: Path) -> None:
    lines = [OK_CSV, csv_line(id="x2", explanation='line 1\n"quoted" line 2, and ""'),
             'x3,Which?,yes,no,,,,a,,,,,,,,,,"the last row\nends on a cell over two lines",']
    questions = load_question_set(write_csv(tmp_path / "bank.csv", lines)).questions
    assert [q.problem_id for q in questions] == ["ok", "x2", "x3"]
    assert questions[2].explanation == "the last row\nends on a cell over two lines"


def test_a_long_list_of_problems_is_cut_and_counted(tmp_path: Path) -> None:
    lines = [json.dumps(row(id=f"q{i}", answer="z")) for i in range(45)]
    with pytest.raises(DataError) as caught:
        load_question_set(write_jsonl(tmp_path / "bank.jsonl", lines))
    message = str(caught.value)
    assert message.startswith("bank.jsonl: 45 problems") and message.endswith("\n  ... and 15 more")
    assert "bank.jsonl:30 (q29)" in message and "bank.jsonl:31 (q30)" not in message


def test_shift_jis_is_refused_with_how_to_save_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bank.csv"
    path.write_bytes(("id,question,choice_a,choice_b,answer\r\n1,心電図,はい,いいえ,a\r\n").encode("cp932"))
    assert find_question_sets(path) == [path]  # the header is ASCII: claimed, so the user sees why it fails
    with pytest.raises(DataError, match=r'^bank\.csv:2: not valid UTF-8 .*Shift_JIS.*"CSV UTF-8 \(コンマ区切り\)"'):
        load_path(path)
    other = write_jsonl(tmp_path / "latin.jsonl", [OK])
    other.write_bytes(other.read_bytes() + b'{"id": "\xff"}\n')
    with pytest.raises(DataError, match=r"^latin\.jsonl:2: not valid UTF-8 \(byte 0xff\); save the file as UTF-8$"):
        load_question_set(other)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("bank.jsonl", b"", "bank.jsonl: no questions (the file is empty)"),
    ("bank.jsonl", b"\n\n  \n", "bank.jsonl: no questions (the file is empty)"),
    ("bank.csv", b"", "bank.csv row 1: no header row (the file is empty)"),
    ("bank.csv", b"\xef\xbb\xbfid,question,choice_a,choice_b,answer\r\n,,,,\r\n",
     "bank.csv: no questions (the file is empty but for its header row)"),
    ("bank.csv", b"id,question,choice_a,choice_b,answer\n", "bank.csv: no questions (the file is empty but for its "
                                                            "header row)"),
])
def test_an_empty_file_is_an_error(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=f"^{re.escape(message)}$"):
        load_question_set(tmp_path / name)


def test_the_loader_writes_nothing(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bank.csv", GOOD_CSV)
    before = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    load_path(path)
    load_question_set(tmp_path)
    assert sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before


def test_a_plan_builds_prompts_with_the_template_for_each_choice_count(tmp_path: Path) -> None:
    lines = [json.dumps(row(id=f"n{n}", question=f"問題 {n}", choices=[f"選択{i}" for i in range(n)],
                            translation={"question": f"Question {n}", "choices": [f"opt{i}" for i in range(n)]}))
             for n in (2, 3, 4, 5, 8)]
    data = load_question_set(write_jsonl(tmp_path / "counts.jsonl", lines))
    items = plan(data, RunConfig(SetSpec("paper"), ("ja", "en")))
    assert [(q.problem_id, lang) for q, lang in items][:4] == [("n2", "ja"), ("n2", "en"), ("n3", "ja"), ("n3", "en")]
    assert len(items) == 10  # paper_choices None: every question, whatever its choice count
    templates = {(q.n_choices, lang): build_prompt(q, lang)[1].name for q, lang in items}
    assert templates[(4, "ja")] == "medpalm_four_choice_cot_ja" and templates[(4, "en")] == "medpalm_four_choice_cot"
    for n in (2, 3, 5, 8):  # build_prompt has only the paper's four- and five-choice wordings: the rest get five
        assert (templates[(n, "ja")], templates[(n, "en")]) == ("medpalm_five_choice_cot_ja", "medpalm_five_choice_cot")
    prompt, _ = build_prompt(items[0][0], "ja")
    assert "問題 2\n選択0,選択1\n" in prompt


def test_a_scripted_run_on_a_hospital_set_is_stored_under_its_name(tmp_path: Path) -> None:
    data = load_question_set(write_jsonl(tmp_path / "Residents 2024.jsonl", GOOD_JSONL))
    answers = {"急性心筋梗塞": "AST", "myocardial": "AST", "loop diuretics": "a, c", "心拍数": "正しい",
               "ショック": "(d)"}
    engine = ScriptedEngine(lambda p: next(v for k, v in answers.items() if k in p.rsplit("###", 2)[-2]) + "\n")
    events = list(run_benchmark(engine, tmp_path / "b.db", RunConfig(SetSpec("paper"), ("ja", "en")), None, data))
    assert events[-1].status == "complete" and events[-1].done == 5  # r2024-1 in both languages
    conn = sqlite3.connect(tmp_path / "b.db")
    rows = conn.execute("select problem_id, language, picked, contraindicated from answers order by id").fetchall()
    benchmark = conn.execute("select benchmark from runs").fetchone()[0]
    conn.close()
    assert benchmark == "residents-2024"
    picked = {(pid, lang): (p, c) for pid, lang, p, c in rows}
    assert picked[("r2024-1", "ja")] == ("e", 1) and picked[("r2024-2", "en")] == ("a,c", 0)
    assert picked[("3", "ja")] == ("a", 0) and picked[("r2024-4", "ja")] == ("d", 1)


def test_the_documented_examples_load(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "question_sets.md").read_text(encoding="utf-8")
    examples = re.findall(r"```(jsonl|csv)\n(.*?)```", doc, re.S)
    assert [kind for kind, _ in examples] == ["jsonl", "csv"]
    for kind, body in examples:
        (tmp_path / f"example.{kind}").write_text(body, encoding="utf-8")
        data = load_question_set(tmp_path / f"example.{kind}")
        assert len(data.questions) == 3 and data.languages == ("ja", "en")
        assert any(q.kinki for q in data.questions) and any(len(q.answer) == 2 for q in data.questions)
