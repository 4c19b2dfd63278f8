"""The leakage check on real question sets (a tiny IgakuQA folder, an imported set) and synthetic
training texts, and the app side that shows a trained model's recorded overlap beside its score."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import gguf
import pytest

from app.bench.data import Dataset, Question, load_igakuqa
from app.bench.importing import add
from app.bench.overlap import OVERLAP_KEY, encode_overlap, overlap_line, recorded_overlap, run_overlap
from app.bench.prompting import build_prompt
from app.model_card import ModelCard
from model_tools.train.leakage import MAX_LISTED, LeakageFound, check_leakage, normalise
from tests.bench.conftest import write_block

QUESTIONS = [  # (Japanese text, choices, English text, English choices): one block of IgakuQA's shape
    ("62歳の男性。2時間持続する前胸部痛を主訴に救急外来を受診した。心電図でII、III、aVFのST上昇を認める。"
     "最も考えられる閉塞部位はどれか。",
     ["左冠動脈主幹部", "左前下行枝", "左回旋枝", "右冠動脈", "対角枝"],
     "A 62-year-old man presents to the emergency department with chest pain lasting two hours. The ECG shows "
     "ST elevation in leads II, III and aVF. Which artery is most likely occluded?",
     ["Left main coronary artery", "Left anterior descending artery", "Left circumflex artery",
      "Right coronary artery", "Diagonal branch"]),
    ("甲状腺機能亢進症でみられる所見として正しいのはどれか。",
     ["徐脈", "体重増加", "手指振戦", "便秘", "寒がり"],
     "Which finding is seen in hyperthyroidism?",
     ["Bradycardia", "Weight gain", "Fine tremor of the fingers", "Constipation", "Cold intolerance"]),
    ("28歳の女性。妊娠32週。頭痛と視野のちらつきを訴えて来院した。血圧172/110mmHg。尿蛋白3+。"
     "まず投与すべき薬剤はどれか。",
     ["硫酸マグネシウム", "オキシトシン", "アスピリン", "フロセミド", "ヘパリン"],
     "A 28-year-old woman at 32 weeks of gestation presents with headache and flickering vision. Her blood "
     "pressure is 172/110 mmHg and urine protein is 3+. Which drug should be given first?",
     ["Magnesium sulfate", "Oxytocin", "Aspirin", "Furosemide", "Heparin"]),
]
UNRELATED = [  # medical, some on the same topics, none a copy
    "急性心筋梗塞の治療では、発症から再灌流までの時間を短くすることが予後を改善する。",
    "55歳の女性。労作時の息切れを主訴に来院した。心エコーで左室駆出率の低下を認める。適切な治療薬はどれか。",
    "甲状腺機能低下症では寒がり、便秘、体重増加、徐脈がみられる。",
    "Which drug is first-line for an acute asthma attack? a. Salbutamol b. Propranolol c. Warfarin",
    "妊娠高血圧症候群の妊婦では、蛋白尿と血圧を妊婦健診ごとに確認する。",
]


def _block(rows: list[tuple[str, list[str], str, list[str]]], exam: int = 116, block: str = "A") -> dict:
    ja, en, meta = [], [], []
    for i, (text, choices, text_en, choices_en) in enumerate(rows, start=1):
        pid = f"{exam}{block}{i}"
        ja.append({"problem_id": pid, "problem_text": text, "choices": choices, "text_only": True,
                   "answer": ["d"], "points": "1"})
        en.append({"problem_id": pid, "problem_text_en": text_en, "choices_en": choices_en, "answer": ["d"]})
        meta.append({"problem_id": pid, "category": "test", "kinki": [], "human_accuracy": "50.0"})
    return {name: [json.dumps(r, ensure_ascii=False) for r in rows]
            for name, rows in (("", ja), ("_translate", en), ("_metadata", meta))}


@pytest.fixture()
def igakuqa(tmp_path: Path) -> Path:
    return write_block(tmp_path / "igakuqa", n=len(QUESTIONS), **_block(QUESTIONS))


@pytest.fixture()
def dataset(igakuqa: Path) -> Dataset:
    return load_igakuqa(igakuqa)


def _training_example(question: Question, language: str = "ja") -> str:
    """A training example as MPEFT renders one: the paper's prompt, then the answer."""
    prompt, _ = build_prompt(question, language)
    return f"{prompt}\n{','.join(question.answer)}"


def _edited(question: Question) -> str:
    """A paraphrase-level copy: three characters of the text changed, the choices in another order."""
    text = question.text_ja.replace("2時間", "3時間").replace("救急外来", "救急部")
    choices = [question.choices_ja[i] for i in (3, 0, 4, 1, 2)]
    return text + "\n" + "\n".join(f"{chr(ord('a') + i)}. {c}" for i, c in enumerate(choices))


def test_normalise_drops_layout_width_case_and_punctuation() -> None:
    assert normalise("「ＡＢＣ」、 a・b。\n(心電図) 　II") == "abcab心電図ii"


def test_a_question_hidden_verbatim_is_exact(dataset: Dataset) -> None:
    target = dataset.by_id()["116A1"]
    texts = [*UNRELATED, _training_example(target), *UNRELATED]
    report = check_leakage(texts, [dataset])
    assert [(o.index, o.problem_id, o.language, o.kind, o.similarity) for o in report.overlaps] == [
        (len(UNRELATED), "116A1", "ja", "exact", 1.0)]
    assert (report.exact, report.near) == (1, 0)
    assert report.overlaps[0].set_name == "igakuqa"


def test_a_paraphrase_is_near_and_a_question_on_the_same_topic_is_not(dataset: Dataset) -> None:
    """The threshold (0.5): a few characters changed and the choices reordered stay well above it; an
    unrelated question on the same topic (an infarct, its ECG and its artery) stays well below."""
    target = dataset.by_id()["116A1"]
    same_topic = ("70歳の女性。胸痛を主訴に来院した。心電図でV1からV4のST上昇を認める。"
                  "責任病変として最も考えられるのはどれか。\na. 右冠動脈\nb. 左前下行枝\nc. 左回旋枝")
    report = check_leakage([_edited(target), same_topic], [dataset], threshold=0.01)
    found = {(o.index, o.problem_id): o for o in report.overlaps}
    assert found[(0, "116A1")].kind == "near"
    assert found[(0, "116A1")].similarity > 0.7
    assert all(o.similarity < 0.3 for o in report.overlaps if o.index == 1)
    default = check_leakage([_edited(target), same_topic], [dataset])
    assert [(o.index, o.problem_id, o.kind) for o in default.overlaps] == [(0, "116A1", "near")]


def test_unrelated_medical_texts_are_clean(dataset: Dataset) -> None:
    report = check_leakage(UNRELATED * 3, [dataset])
    assert report.overlaps == [] and (report.exact, report.near) == (0, 0)
    assert "No training text repeats a benchmark question" in report.message()


def test_a_copied_english_translation_is_caught(dataset: Dataset) -> None:
    target = dataset.by_id()["116A3"]
    report = check_leakage(["Translate and answer.\n" + _training_example(target, "en")], [dataset])
    assert [(o.problem_id, o.language, o.kind) for o in report.overlaps] == [("116A3", "en", "exact")]
    near = check_leakage([target.text_en.replace("flickering", "blurred")], [dataset])
    assert [(o.problem_id, o.language, o.kind) for o in near.overlaps] == [("116A3", "en", "near")]


def test_a_long_text_that_holds_the_question_is_caught(dataset: Dataset) -> None:
    """Containment, not Jaccard: a question inside a corpus paragraph several times its length."""
    target = dataset.by_id()["116A3"]
    paragraph = "。".join(UNRELATED * 4) + target.text_ja + "。".join(UNRELATED * 4)
    report = check_leakage([paragraph], [dataset])
    assert [(o.problem_id, o.kind) for o in report.overlaps] == [("116A3", "near")]


def test_report_message_as_dict_and_the_error(dataset: Dataset) -> None:
    block_a = [q for q in dataset.questions if q.block == "A"]
    texts = [_training_example(q) for q in block_a] * 10 + [_edited(dataset.by_id()["116A1"])]
    report = check_leakage(texts, [dataset])
    assert (report.exact, report.near) == (30, 1)
    message = report.message()
    assert message.count("\n  text ") == MAX_LISTED
    assert f"… and {31 - MAX_LISTED} more" in message
    assert "31 training texts repeat benchmark questions: 30 exact, 1 near-duplicate" in message
    data = report.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["sets"] == [{"name": "igakuqa", "fingerprint": dataset.fingerprint, "questions": 18,
                             "exact": 30, "near": 1}]
    assert data["texts"] == len(texts) and len(data["texts_sha256"]) == 64 and len(data["overlaps"]) == 31
    error = LeakageFound(report)
    assert error.report is report and "--allow-overlap" in str(error) and message in str(error)


def test_progress_is_reported(dataset: Dataset) -> None:
    seen: list[tuple[int, int]] = []
    check_leakage(UNRELATED * 220, [dataset], on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(500, 1100), (1000, 1100), (1100, 1100)]


def test_known_sets_are_igakuqa_and_the_imported_ones(igakuqa: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JMEDLLM_DATA_DIR", str(tmp_path / "appdata"))
    monkeypatch.setenv("JMEDLLM_IGAKUQA_DIR", str(igakuqa))
    own = tmp_path / "residents-2024.jsonl"
    row = {"id": "r1", "question": "アナフィラキシーショックの初期対応で最も優先すべきものはどれか。",
           "choices": ["アドレナリン筋注", "抗ヒスタミン薬内服", "ステロイド内服"], "answer": "a"}
    own.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    add(own)
    texts = ["アナフィラキシーショックの初期対応で最も優先すべきものはどれか。アドレナリン筋注、抗ヒスタミン薬内服、"
             "ステロイド内服", _training_example(load_igakuqa(igakuqa).by_id()["116A2"])]
    report = check_leakage(texts)
    assert [s["name"] for s in report.sets_checked] == ["igakuqa", "residents-2024"]
    assert [(o.index, o.set_name, o.problem_id, o.kind) for o in report.overlaps] == [
        (0, "residents-2024", "r1", "exact"), (1, "igakuqa", "116A2", "exact")]
    assert report.notes == []

    monkeypatch.setenv("JMEDLLM_IGAKUQA_DIR", str(tmp_path / "nowhere"))
    without = check_leakage(texts)
    assert [s["name"] for s in without.sets_checked] == ["residents-2024"]
    assert without.notes[0].startswith("IgakuQA not checked: IgakuQA data not found")
    assert "Note: IgakuQA not checked" in without.message()


def _synthetic_questions(n: int, rng: random.Random) -> Dataset:
    kana = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわ"
    kanji = "心肺肝腎脳胃腸血管症炎癌熱痛咳尿骨筋皮膚眼耳鼻喉歯薬剤投与検査診断治療手術"

    def words(k: int) -> str:
        return "".join(rng.choice(kanji) + rng.choice(kanji) + rng.choice(kana) for _ in range(k))

    questions = [Question(f"s{i}", 0, 0, "", words(15) + "のはどれか。", tuple(words(3) for _ in range(5)), "", (),
                          ("a",), 1, True) for i in range(n)]
    return Dataset(Path("synthetic"), questions, "0" * 64, name="synthetic")


def test_speed_5k_texts_against_2k_questions() -> None:
    rng = random.Random(14)
    questions = _synthetic_questions(2000, rng)
    texts = [_synthetic_questions(1, rng).questions[0].text_ja * 3 for _ in range(5000)]
    texts[1234] = "問: " + questions.questions[42].text_ja + " ".join(questions.questions[42].choices_ja)
    start = time.perf_counter()
    report = check_leakage(texts, [questions])
    elapsed = time.perf_counter() - start
    assert [(o.index, o.problem_id, o.kind) for o in report.overlaps] == [(1234, "s42", "exact")]
    assert elapsed < 20, f"{elapsed:.1f} s"


def test_the_recorded_overlap_goes_from_the_report_to_the_run_line(dataset: Dataset, tmp_path: Path) -> None:
    texts = [_training_example(dataset.by_id()["116A1"]), _edited(dataset.by_id()["116A1"]), *UNRELATED]
    value = encode_overlap(check_leakage(texts, [dataset]).as_dict())
    model = tmp_path / "trained.gguf"
    writer = gguf.GGUFWriter(str(model), "qwen2")
    writer.add_string(OVERLAP_KEY, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    card = ModelCard(str(model), model.name, model.stat().st_size, "0" * 64, "qwen2", "trained", "", "F16", 0, 0,
                     None)
    stored = run_overlap(card)
    assert stored is not None and recorded_overlap({OVERLAP_KEY: stored}) == json.loads(value)
    assert run_overlap(ModelCard(**{**card.__dict__, "endpoint": "http://127.0.0.1:8080"})) is None

    run = {"benchmark": "igakuqa", "data_fingerprint": dataset.fingerprint, "training_overlap": stored}
    assert overlap_line(run) == ("Training-data overlap with igakuqa (recorded when this model was trained): "
                                 "1 exact, 1 near-duplicate of 18 questions (threshold 0.50).")
    other = overlap_line({**run, "data_fingerprint": "f" * 64})
    assert other is not None and f"another version of this set, data {dataset.fingerprint[:12]}" in other
    assert overlap_line({**run, "benchmark": "medqa"}) == (
        "Training-data overlap: medqa was not checked when this model was trained (checked: igakuqa).")
    assert overlap_line({**run, "training_overlap": None}) is None


@pytest.mark.parametrize("value", [None, 3, "not json", "[]", '{"version": 2}',
                                   '{"version": 1, "texts_sha256": "x", "threshold": 0.5, "exact": true, '
                                   '"near": 0, "sets": []}',
                                   '{"version": 1, "texts_sha256": "x", "threshold": 0.5, "exact": 0, "near": 0, '
                                   '"sets": [{"name": "igakuqa"}]}'])
def test_a_missing_or_malformed_record_reads_as_none(value: object) -> None:
    assert recorded_overlap({OVERLAP_KEY: value}) is None
