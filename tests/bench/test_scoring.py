"""Hand-made scorer cases: the paper's Gestalt (flaws included), corrected Gestalt, exact, letter."""

from __future__ import annotations

from app.bench.metrics import gestalt_paper_correct, igakuqa_letter_correct
from app.bench.scoring import empty_answer_floor, score_letters, score_response
from app.extraction import answer_line, parse_letters, top_k

CHOICES = ["夜間高血圧となることが多い。", "肥満患者では減量を推奨する。", "α遮断薬が第一選択薬である。",
           "家庭血圧では早朝に高血圧となることが多い。", "持続的気道陽圧法〈CPAP〉で降圧が期待される。"]


def test_single_answer_exact_text_and_japanese_punctuation() -> None:
    s = score_response("X1", "α遮断薬が第一選択薬である。", CHOICES, ["c"])
    assert s.gestalt_paper and s.gestalt and s.exact and s.letter
    assert s.picked == ("c",) and not s.abstained
    # without the Japanese full stop: still the best Gestalt match, but no longer an exact match
    s = score_response("X1", "α遮断薬が第一選択薬", CHOICES, ["c"])
    assert s.gestalt_paper and s.gestalt and not s.exact


def test_wrong_answer() -> None:
    s = score_response("X1", "夜間高血圧となることが多い", CHOICES, ["c"])
    assert s.picked == ("a",)
    assert not (s.gestalt_paper or s.gestalt or s.exact or s.letter)


def test_multi_answer_takes_k_best() -> None:
    choices = ["酸素欠乏症", "硫化水素中毒", "一酸化炭素中毒", "二酸化炭素中毒", "二酸化窒素中毒"]
    s = score_response("X2", "酸素欠乏症, 硫化水素中毒", choices, ["a", "b"])
    assert s.gestalt_paper and s.gestalt and s.letter
    assert s.picked == ("a", "b")
    # the paper's exact match compares with the gold joined by "," (no space)
    assert not s.exact
    assert score_response("X2", "酸素欠乏症,硫化水素中毒", choices, ["a", "b"]).exact
    # one of two right is wrong under every metric
    s = score_response("X2", "酸素欠乏症, 二酸化窒素中毒", choices, ["a", "b"])
    assert not (s.gestalt or s.letter or s.gestalt_paper)


def test_multi_answer_whole_line_similarity_flaw_is_reproduced() -> None:
    # The paper compares the whole line with each choice: a long third choice can outscore a
    # short right one. Reproduced on purpose (the number must match the paper's code).
    choices = ["Oxygen deficiency", "Hydrogen sulfide poisoning", "Carbon monoxide poisoning",
               "Carbon dioxide poisoning", "Nitrogen dioxide poisoning"]
    s = score_response("X2", "Oxygen deficiency, Hydrogen sulfide poisoning", choices, ["a", "b"])
    assert s.picked == ("b", "e")
    assert not (s.gestalt_paper or s.gestalt)


def test_ties_go_to_the_lower_index() -> None:
    assert top_k([0.5, 0.7, 0.7, 0.1], 1) == (1,)
    assert top_k([0.5, 0.7, 0.7, 0.1], 2) == (1, 2)
    # identical choices: the response matches both equally; the lower index is picked
    choices = ["same", "same", "other", "x", "y"]
    assert score_response("X3", "same", choices, ["a"]).gestalt
    assert not score_response("X3", "same", choices, ["b"]).gestalt


def test_commas_inside_choices_break_only_the_paper_metric() -> None:
    choices = ["1,000 mL", "500 mL", "250 mL", "100 mL", "50 mL"]
    # gold "1,000 mL" splits into ["1", "000 mL"]: the paper's code looks for two picks, never equal
    assert not gestalt_paper_correct("1,000 mL", choices, ["a"])
    s = score_response("X4", "1,000 mL", choices, ["a"])
    assert s.gestalt and s.letter and not s.gestalt_paper
    # exact match survives: the joined gold text itself is compared
    assert s.exact


def test_empty_response_abstains_and_defines_the_chance_floor() -> None:
    s = score_response("X1", "", CHOICES, ["a"])
    assert s.abstained and s.picked == () and not s.letter
    # all similarities are 0, so the paper's code picks the first choice: "a" is correct by chance
    assert s.gestalt_paper and empty_answer_floor("X1", CHOICES, ["a"])
    assert not empty_answer_floor("X1", CHOICES, ["c"])
    assert score_response("X1", "申し訳ありませんが、答えられません", CHOICES, ["c"]).abstained


def test_letter_answers_and_igakuqa_rule() -> None:
    assert parse_letters("c", 5) == ("c",)
    assert parse_letters("(b)", 5) == ("b",)
    assert parse_letters("ａ，ｃ", 5) == ("a", "c")
    assert parse_letters("a and e", 5) == ("a", "e")
    assert parse_letters("f", 5) is None
    assert parse_letters("肝硬変", 5) is None
    s = score_response("X5", "a, c", CHOICES, ["a", "c"])
    assert s.letter and s.picked == ("a", "c")
    assert igakuqa_letter_correct("X", "a,c", ["c", "a"])
    assert not igakuqa_letter_correct("X", "a, c", ["a", "c"])  # IgakuQA does not strip spaces
    assert igakuqa_letter_correct("112B30", "a", ["a or d"])
    assert igakuqa_letter_correct("112B30", "d", ["a or d"])
    assert not igakuqa_letter_correct("112B30", "b", ["a or d"])
    assert igakuqa_letter_correct("116A71", "", ["e"])  # correct for everyone


def test_special_cases_in_the_text_metrics() -> None:
    assert score_response("112B30", "帝王切開を行う", ["帝王切開を行う。", "x", "y", "β刺激薬", "z"],
                          ["a or d"]).gestalt
    assert score_response("112B30", "β刺激薬", ["帝王切開を行う。", "x", "y", "β刺激薬", "z"], ["a or d"]).gestalt_paper


def test_numeric_questions() -> None:
    assert score_response("112C66", "26", [], ["26"]).letter
    assert score_response("112C66", "２６ Torr", [], ["26"]).gestalt
    assert not score_response("112C66", "25", [], ["26"]).exact


def test_contraindicated_pick_and_loglik_letters() -> None:
    s = score_response("X1", "家庭血圧では早朝に高血圧となることが多い。", CHOICES, ["c"], kinki=["d"])
    assert s.kinki_picked == ("d",)
    s = score_letters("X1", ("c",), CHOICES, ["c"], kinki=["d"])
    assert s.letter and s.gestalt_paper and s.exact and s.kinki_picked == ()


def test_answer_line_is_the_first_non_empty_line_after_the_marker() -> None:
    assert answer_line("\n\n  答え\n理由", "### 応答：") == "答え"
    assert answer_line("prompt ### Response:\nfoo\nbar", "### Response:") == "foo"
    assert answer_line("", "### Response:") == ""


def test_numeric_answers_compare_as_numbers() -> None:
    assert score_response("120D1", "0.4", (), ("0.40",)).verdicts["letter"]
    assert score_response("120D1", "０．４０", (), ("0.4",)).verdicts["gestalt_paper"]
    assert not score_response("120D1", "4", (), ("0.4",)).verdicts["letter"]


def test_either_answer_of_119e28() -> None:
    choices = ("甲", "乙", "丙", "丁", "戊")
    assert score_response("119E28", "c", choices, ("a", "c")).verdicts["letter"]
    assert score_response("119E28", "a", choices, ("a", "c")).verdicts["letter"]
    assert not score_response("119E28", "a,c", choices, ("a", "c")).verdicts["letter"]
