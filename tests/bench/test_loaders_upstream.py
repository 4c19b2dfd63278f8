"""The upstream layouts (harness, MMLU/JMMLU, JMedBench, IgakuQA119, JMLE2026-Bench) on tiny files
written here in each repository's exact layout (no upstream data), including malformed lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.bench.data import DataError, Dataset
from app.bench.loaders import discover, harness, igakuqa119, jmedbench, load_path, mmlu
from app.bench.prompting import build_prompt
from app.bench.runner import RunConfig, plan
from app.bench.sets import SetSpec
from app.prompts import default_template

LAYOUTS = (harness, mmlu, jmedbench, igakuqa119)  # imported: registered


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def text(path: Path, content: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode(encoding))
    return path


def layouts_found(path: Path) -> list[tuple[str, str]]:
    return [(x.name, p.name) for x, p in discover(path)]


def assert_plans(dataset: Dataset, languages: tuple[str, ...], n_choices: int) -> None:
    items = plan(dataset, RunConfig(set_spec=SetSpec("paper"), languages=languages))
    assert items and {lang for _, lang in items} == set(languages) & set(dataset.languages)
    question, language = items[0]
    prompt, template = build_prompt(question, language)
    assert template == default_template(language, n_choices)  # type: ignore[arg-type]
    assert question.choices(language)[0] in prompt


# ---- japanese-lm-med-harness: dataset/MedQA/usmleqa_{ja,en}.jsonl, answer = choice text --------------

def medqa(problem_id: str, text: str, choices: list[str], answer: str) -> dict:
    return {"problem_id": problem_id, "problem_text": text, "choices": choices, "answer": answer}


@pytest.fixture
def harness_clone(tmp_path: Path) -> Path:
    root = tmp_path / "japanese-lm-med-harness-main"
    data = root / "dataset"
    jsonl(data / "MedQA" / "usmleqa_ja.jsonl", [
        medqa("q1", "発熱の原因はどれか。", ["感染", "骨折", "脱水", "貧血"], "感染"),
        medqa("q2", "正しいのはどれか。2つ選べ。", ["A", "B", "C", "D"], "B,D"),
    ])
    jsonl(data / "MedQA" / "usmleqa_en.jsonl", [
        medqa("q1", "What causes fever?", ["Infection", "Fracture", "Dehydration", "Anemia"], "Infection"),
        medqa("q2", "Choose two.", ["A", "B", "C", "D"], "B,D"),
        medqa("q3", "English only?", ["yes", "no, never", "maybe", "later"], "no, never"),
    ])
    jsonl(data / "MedMCQA" / "medmcqa_en.jsonl", [
        {"problem_text": "Which vitamin?", "choices": ["A", "B12", "C", "D"], "answer": "B12"},
    ])
    return root


def test_harness_discovers_each_benchmark_folder(harness_clone: Path) -> None:
    assert layouts_found(harness_clone.parent) == [("harness", "MedMCQA"), ("harness", "MedQA")]
    assert layouts_found(harness_clone / "dataset" / "MedQA" / "usmleqa_en.jsonl") == [("harness", "usmleqa_en.jsonl")]


def test_harness_merges_languages_by_id_and_maps_answer_texts(harness_clone: Path) -> None:
    ds = load_path(harness_clone / "dataset" / "MedQA")
    assert (ds.name, ds.layout, ds.paper_choices, ds.languages) == ("medqa", "harness", 4, ("ja", "en"))
    by_id = ds.by_id()
    assert [q.problem_id for q in ds.questions] == ["q1", "q2", "q3"]
    assert by_id["q1"].languages == ("ja", "en") and by_id["q1"].answer == ("a",)
    assert by_id["q1"].choices_en[0] == "Infection" and by_id["q1"].choices_ja[0] == "感染"
    assert by_id["q2"].answer == ("b", "d")
    assert by_id["q3"].languages == ("en",) and by_id["q3"].answer == ("b",)  # a choice holding a comma
    assert len(ds.fingerprint) == 64 and ds.files == ["MedQA/usmleqa_ja.jsonl", "MedQA/usmleqa_en.jsonl"]
    assert_plans(ds, ("ja", "en"), 4)
    only_en = load_path(harness_clone / "dataset" / "MedQA" / "usmleqa_en.jsonl")
    assert only_en.languages == ("en",) and len(only_en.questions) == 3


def test_harness_numbers_rows_without_problem_id(harness_clone: Path) -> None:
    ds = load_path(harness_clone / "dataset" / "MedMCQA")
    assert (ds.name, [q.problem_id for q in ds.questions], ds.questions[0].answer) == ("medmcqa", ["1"], ("b",))


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "usmleqa_ja.jsonl:2: malformed JSON"),
    (json.dumps(medqa("q2", "x", ["a", "b"], "c")), "usmleqa_ja.jsonl:2: answer 'c' is not one of the choices"),
    (json.dumps(medqa("q2", "x", ["only"], "only")), "usmleqa_ja.jsonl:2: 1 choices"),
    (json.dumps(medqa("q1", "x", ["a", "b"], "a")), "usmleqa_ja.jsonl:2: duplicate id 'q1'"),
])
def test_harness_malformed_lines_name_file_and_line(harness_clone: Path, line: str, message: str) -> None:
    path = harness_clone / "dataset" / "MedQA" / "usmleqa_ja.jsonl"
    first = path.read_text(encoding="utf-8").splitlines()[0]
    path.write_text(f"{first}\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_path(harness_clone / "dataset" / "MedQA")


def test_harness_languages_must_agree_on_the_answer(harness_clone: Path) -> None:
    jsonl(harness_clone / "dataset" / "MedQA" / "usmleqa_en.jsonl",
          [medqa("q1", "What causes fever?", ["Infection", "Fracture", "Dehydration", "Anemia"], "Fracture")])
    with pytest.raises(DataError, match=r"usmleqa_en.jsonl:1: q1 has 4 choices and answer b, but .*usmleqa_ja"):
        load_path(harness_clone / "dataset" / "MedQA")


# ---- MMLU data/test/<subject>_test.csv and JMMLU/<subject>.csv: no header, question,A,B,C,D,answer ----

def subject_rows(subject: str, japanese: bool = False) -> str:
    q = "次のうち正しいのはどれか？" if japanese else f"Which is true about {subject.replace('_', ' ')}?"
    return (f"{q},one , two,three,four,B\n"
            f'"A question, with a comma\nand a second line",w,x,"y, z",v,D\n')


@pytest.fixture
def mmlu_tarball(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for subject in mmlu.MEDICAL:
        text(root / "test" / f"{subject}_test.csv", subject_rows(subject))
        text(root / "dev" / f"{subject}_dev.csv", subject_rows(subject))
    text(root / "test" / "virology_test.csv", subject_rows("virology"))
    return root


def test_mmlu_reads_the_five_medical_test_subjects(mmlu_tarball: Path) -> None:
    assert layouts_found(mmlu_tarball.parent) == [("mmlu", "test")]
    ds = load_path(mmlu_tarball.parent)
    assert (ds.name, ds.layout, ds.paper_choices, ds.languages) == ("mmlu", "mmlu", 4, ("en",))
    assert len(ds.questions) == 10 and {q.category for q in ds.questions} == set(mmlu.MEDICAL)
    first, second = ds.questions[:2]
    assert (first.problem_id, first.choices_en, first.answer, first.source) == (
        "anatomy-1", ("one", "two", "three", "four"), ("b",), "anatomy_test.csv:1")
    assert second.text_en.endswith("and a second line") and second.choices_en[2] == "y, z"
    assert (second.answer, second.source) == (("d",), "anatomy_test.csv:2")
    assert_plans(ds, ("en",), 4)


def test_mmlu_one_subject_file_and_missing_subjects(mmlu_tarball: Path) -> None:
    single = load_path(mmlu_tarball / "test" / "virology_test.csv")
    assert (single.name, len(single.questions)) == ("mmlu-virology", 2)
    (mmlu_tarball / "test" / "anatomy_test.csv").unlink()
    with pytest.raises(DataError, match="five medical subjects; missing anatomy_test.csv"):
        load_path(mmlu_tarball / "test")


@pytest.mark.parametrize(("row", "message"), [
    ("q,a,b,c,d,E\n", "medical_genetics_test.csv:4: answer 'E'"),
    ("q,a,b,c,D\n", "medical_genetics_test.csv:4: 5 fields"),
    ("q,a,,c,d,A\n", "medical_genetics_test.csv:4: choice B is empty"),
])
def test_mmlu_malformed_rows_name_the_line_after_multiline_records(mmlu_tarball: Path, row: str, message: str) -> None:
    path = mmlu_tarball / "test" / "medical_genetics_test.csv"
    path.write_text(subject_rows("medical_genetics") + row, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_path(mmlu_tarball / "test")


def test_jmmlu_reads_its_bom_files_in_japanese(tmp_path: Path) -> None:
    folder = tmp_path / "JMMLU-main" / "JMMLU"
    for subject in (*mmlu.MEDICAL, "japanese_history"):
        text(folder / f"{subject}.csv", "\ufeff" + subject_rows(subject, japanese=True))
    text(tmp_path / "JMMLU-main" / "README.md", "# JMMLU\n")
    assert layouts_found(tmp_path) == [("jmmlu", "JMMLU")]
    ds = load_path(tmp_path / "JMMLU-main")
    assert (ds.name, ds.languages, len(ds.questions), ds.paper_choices) == ("jmmlu", ("ja",), 10, 4)
    assert ds.questions[0].text_ja == "次のうち正しいのはどれか？" and ds.questions[0].choices_ja[0] == "one"
    assert_plans(ds, ("ja", "en"), 4)  # the English half of the request is left out
    assert layouts_found(folder / "anatomy.csv") == [("jmmlu", "anatomy.csv")]


# ---- JMedBench: <set>/test.jsonl with sample_id, question, options, answer_idx, n_options, metadata ----

def sample(sample_id: object, question: str, options: list[str], answer_idx: object, **metadata: str) -> dict:
    return {"sample_id": sample_id, "question": question, "options": options, "answer_idx": answer_idx,
            "n_options": len(options), "metadata": metadata}


@pytest.fixture
def jmedbench_snapshot(tmp_path: Path) -> Path:
    root = tmp_path / "JMedBench"
    jsonl(root / "medmcqa_jp" / "test.jsonl", [
        sample("m1", "B12欠乏で起こるのはどれか。", ["巨赤芽球性貧血", "鉄欠乏性貧血", "溶血性貧血", "再生不良"], 0),
        sample(2, "正しいのはどれか。", ["あ", "い", "う", "え"], 3),
    ])
    jsonl(root / "medmcqa_jp" / "train.jsonl", [sample("t1", "例", ["a", "b", "c", "d"], 1)])
    jsonl(root / "pubmedqa_jp" / "test.jsonl", [
        sample("p1", "この治療は有効か？", ["はい", "いいえ", "たぶん"], 1, context="要旨の本文。"),
    ])
    jsonl(root / "mrner_disease" / "test.jsonl", [{"text": "本文", "labels": ["疾患"], "entity_type": "disease"}])
    return root


def test_jmedbench_finds_only_the_multiple_choice_sets(jmedbench_snapshot: Path) -> None:
    assert layouts_found(jmedbench_snapshot) == [("jmedbench", "medmcqa_jp"), ("jmedbench", "pubmedqa_jp")]
    assert layouts_found(jmedbench_snapshot / "pubmedqa_jp" / "test.jsonl") == [("jmedbench", "pubmedqa_jp")]


def test_jmedbench_reads_test_split_with_context(jmedbench_snapshot: Path) -> None:
    ds = load_path(jmedbench_snapshot / "medmcqa_jp")
    assert (ds.name, ds.layout, ds.languages, ds.paper_choices) == ("jmedbench-medmcqa-jp", "jmedbench", ("ja",), 4)
    assert [(q.problem_id, q.answer) for q in ds.questions] == [("m1", ("a",)), ("2", ("d",))]
    assert ds.files == ["medmcqa_jp/test.jsonl"] and ds.questions[1].source == "medmcqa_jp/test.jsonl:2"
    assert_plans(ds, ("ja",), 4)
    pubmed = load_path(jmedbench_snapshot / "pubmedqa_jp")
    assert pubmed.questions[0].text_ja == "要旨の本文。\n\nこの治療は有効か？" and pubmed.paper_choices == 3
    assert_plans(pubmed, ("ja",), 5)


def test_jmedbench_language_by_set_name_or_script(tmp_path: Path) -> None:
    jsonl(tmp_path / "medqa" / "test.jsonl", [sample("e1", "What is it?", ["a", "b", "c", "d", "e"], 2)])
    jsonl(tmp_path / "my_clinic" / "test.jsonl", [sample("c1", "これは何か？", ["a", "b"], 0)])
    assert load_path(tmp_path / "medqa").languages == ("en",)
    assert load_path(tmp_path / "my_clinic").languages == ("ja",)


@pytest.mark.parametrize(("row", "message"), [
    (sample("x", "q", ["a", "b"], 2), r"test.jsonl:2: x: 'answer_idx' 2 is not an index of its 2 options"),
    (sample("x", "q", ["a", ""], 0), "test.jsonl:2: x: choice b is empty"),
    (sample(None, "q", ["a", "b"], 0), "test.jsonl:2: 'sample_id' is missing"),
    (sample("m1", "q", ["a", "b"], 0), "test.jsonl:2: duplicate id 'm1'"),
])
def test_jmedbench_malformed_lines(jmedbench_snapshot: Path, row: dict, message: str) -> None:
    jsonl(jmedbench_snapshot / "medmcqa_jp" / "test.jsonl", [sample("m1", "q", ["a", "b"], 0), row])
    with pytest.raises(DataError, match=message):
        load_path(jmedbench_snapshot / "medmcqa_jp")


# ---- IgakuQA119: questions/119X_json.json + results/correct_answers.csv -------------------------------

def block_items(block: str) -> list[dict]:
    items = [{"number": f"119{block}1", "question": f"{block}ブロックの問題。 ",
              "choices": ["a. 一", "b. 二", "c. 三", "d. 四", "e.五"], "has_image": False}]
    if block == "B":
        items.append({"number": "119B26", "question": "必修の臨床問題。", "choices": [f"{x}. {x}" for x in "abcde"],
                      "has_image": True})
    if block == "C":
        items.append({"number": "119C74", "question": "計算せよ。", "choices": [], "has_image": False})
        items.append({"number": "119C19", "question": "OCRが崩れた問題。",
                      "choices": ["a. 一", "b. 二0三", "d. 四", "e. 五"], "has_image": False})
    return items


ANSWERS = "問題番号,解答\n119A1,a\n119B1,e\n119B26,bd\n119C1,c\n119C74,36\n119C19,d\n119D1,a\n119E1,b\n119F1,a\n"


@pytest.fixture
def igakuqa119_clone(tmp_path: Path) -> Path:
    root = tmp_path / "IgakuQA119-main"
    for block in "ABCDEF":
        text(root / "questions" / f"119{block}_json.json",
             json.dumps(block_items(block), ensure_ascii=False, indent=2))
    text(root / "results" / "correct_answers.csv", ANSWERS)
    return root


def test_igakuqa119_reads_blocks_points_and_answers(igakuqa119_clone: Path) -> None:
    assert layouts_found(igakuqa119_clone.parent) == [("igakuqa119", "IgakuQA119-main")]
    assert layouts_found(igakuqa119_clone / "questions") == [("igakuqa119", "IgakuQA119-main")]
    ds = load_path(igakuqa119_clone)
    assert (ds.name, ds.layout, ds.paper_choices, ds.pass_lines, ds.languages) == (
        "igakuqa119", "igakuqa119", 5, {}, ("ja",))
    by_id = ds.by_id()
    assert "119C19" not in by_id and len(ds.questions) == 8  # garbled upstream: left out
    a1 = by_id["119A1"]
    assert (a1.exam, a1.year, a1.block, a1.text_ja, a1.choices_ja, a1.points) == (
        119, 2025, "A", "Aブロックの問題。", ("一", "二", "三", "四", "五"), 1)
    assert a1.source == "questions/119A_json.json:2"
    assert (by_id["119B26"].points, by_id["119B26"].answer, by_id["119B26"].text_only) == (3, ("b", "d"), False)
    assert (by_id["119C74"].choices_ja, by_id["119C74"].answer) == ((), ("36",))
    assert ds.files[0] == "results/correct_answers.csv"
    assert_plans(ds, ("ja",), 5)


@pytest.mark.parametrize(("items", "answers", "message"), [
    ([{"number": "119A1", "question": "q", "choices": ["a. x", "c. y"], "has_image": False}], ANSWERS,
     r"questions/119A_json.json:2: 119A1: choice b is 'c. y'"),
    ([{"number": "119B1", "question": "q", "choices": ["a. x", "b. y"], "has_image": False}], ANSWERS,
     r"questions/119A_json.json:2: 'number' '119B1' is not a question of 119A"),
    ([{"number": "119A1", "question": "q", "choices": ["a. x"], "has_image": False}], ANSWERS,
     r"questions/119A_json.json:2: 119A1: 1 choices"),
    (block_items("A"), ANSWERS.replace("119A1,a\n", ""), r"119A_json.json:2: 119A1: no answer in results/"),
    (block_items("A"), ANSWERS.replace("119A1,a", "119A1,f"), r"correct_answers.csv:2: 119A1: answer 'f' is not"),
])
def test_igakuqa119_malformed(igakuqa119_clone: Path, items: list, answers: str, message: str) -> None:
    text(igakuqa119_clone / "questions" / "119A_json.json", json.dumps(items, ensure_ascii=False, indent=2))
    text(igakuqa119_clone / "results" / "correct_answers.csv", answers)
    with pytest.raises(DataError, match=message):
        load_path(igakuqa119_clone)


def test_igakuqa119_needs_its_answers(igakuqa119_clone: Path) -> None:
    (igakuqa119_clone / "results" / "correct_answers.csv").unlink()
    with pytest.raises(DataError, match="no correct_answers.csv in questions/ or results/"):
        load_path(igakuqa119_clone)
    text(igakuqa119_clone / "questions" / "correct_answers.csv", ANSWERS)  # naoto-iwase's copy keeps it here
    assert len(load_path(igakuqa119_clone).questions) == 8


# ---- JMLE2026-Bench: jmle2026_dataset.json, choices inside question_text ----------------------------

def jmle(qid: str, text: str, answer: list[str], kind: str = "multiple_choice", **extra: object) -> dict:
    block, number = qid[3], int(qid.split("-")[1])
    return {"question_id": qid, "block": block, "number": number, "question_type": kind, "question_text": text,
            "clinical_images": [], "requires_image": False, "num_choices_to_select": len(answer),
            "answer": answer, **extra}


JMLE_ITEMS = [
    jmle("120A-1", "1\u3000治療で適切なのはどれか。\n\na\u3000手術\n\nb\u3000輸液\n\nc\u3000経過観察\n\nd\u3000投薬"
                   "\n\ne\u3000透析", ["a"]),
    jmle("120B-41", "41\u3000所見はどれか。\n\u3000a\u3000甲\n\u3000b\u3000乙\n\u3000c\u3000丙\n\u3000d\u3000丁"
                    "\n\u3000e\u3000戊",
         ["b", "e"], serial_group={"group_id": "120B-41-42", "questions": ["120B-41"], "context_text": "共通の症例。"}),
    jmle("120C-71", "71\u3000適切なのはどれか。\n\n| | Na | K |\n|--|--|--|\n| a | 1 | 2 |\n| b | 3 | 4 |", ["b"]),
    jmle("120A-74", "74\u3000求めよ。\n\n解答：①．②③", ["0.40"], kind="calculation"),
]


@pytest.fixture
def jmle_clone(tmp_path: Path) -> Path:
    root = tmp_path / "JMLE2026-Bench-main"
    text(root / "jmle2026_dataset.json", json.dumps(JMLE_ITEMS, ensure_ascii=False, indent=2))
    text(root / "README.md", "# JMLE2026-Bench\n")
    return root


def test_jmle_reads_choices_from_the_question_text(jmle_clone: Path) -> None:
    assert layouts_found(jmle_clone.parent) == [("jmle-bench", "jmle2026_dataset.json")]
    ds = load_path(jmle_clone)
    assert (ds.name, ds.layout, ds.paper_choices, ds.pass_lines) == ("jmle2026", "jmle-bench", 5, {})
    by_id = ds.by_id()
    a1 = by_id["120A1"]
    assert (a1.exam, a1.year, a1.text_ja, a1.choices_ja, a1.answer, a1.points, a1.source) == (
        120, 2026, "治療で適切なのはどれか。", ("手術", "輸液", "経過観察", "投薬", "透析"), ("a",), 1,
        "jmle2026_dataset.json:2")
    b41 = by_id["120B41"]
    assert (b41.text_ja, b41.choices_ja[4], b41.answer, b41.points) == (
        "共通の症例。\n\n所見はどれか。", "戊", ("b", "e"), 3)
    assert by_id["120C71"].choices_ja == ("1 | 2", "3 | 4") and "| | Na | K |" in by_id["120C71"].text_ja
    assert (by_id["120A74"].choices_ja, by_id["120A74"].answer) == ((), ("0.40",))
    assert_plans(ds, ("ja",), 5)


@pytest.mark.parametrize(("item", "message"), [
    (jmle("120A-2", "2\u3000q\na\u3000x\nc\u3000y", ["a"]), r"jmle2026_dataset.json:\d+: 120A-2: the choices .* 'ac'"),
    (jmle("120A-2", "2\u3000q\na\u3000x\nb\u3000y", ["c"]), r"120A-2: answer \['c'\] is not letters among .* ab"),
    ({**jmle("120A-2", "2\u3000q\na\u3000x\nb\u3000y", ["a"]), "num_choices_to_select": 2}, "num_choices_to_select"),
    ({**jmle("120A-2", "2\u3000q\na\u3000x\nb\u3000y", ["a"]), "block": "B"}, "disagrees with the question_id"),
    (jmle("120A-2", "2\u3000q", ["x"], kind="calculation"), "one number"),
])
def test_jmle_malformed(jmle_clone: Path, item: dict, message: str) -> None:
    text(jmle_clone / "jmle2026_dataset.json", json.dumps([JMLE_ITEMS[0], item], ensure_ascii=False, indent=2))
    with pytest.raises(DataError, match=message):
        load_path(jmle_clone)


def test_jmle_malformed_json_names_the_line(jmle_clone: Path) -> None:
    text(jmle_clone / "jmle2026_dataset.json", '[\n  {"question_id": "120A-1",\n  oops\n]')
    with pytest.raises(DataError, match="jmle2026_dataset.json:3: malformed JSON"):
        load_path(jmle_clone)
