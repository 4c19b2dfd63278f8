"""The paper's templates ship verbatim; language detection."""

from __future__ import annotations

import re

import pytest

from app.language import detect_language, resolve_language
from app.prompts import (
    TemplateError,
    attribution,
    default_template,
    get_template,
    paper_templates,
    render,
    system_prompt,
)
from tests.conftest import SHARED_DIR, require_shared

PROTOCOL = SHARED_DIR / "prompts" / "paper_templates.md"


def _protocol_blocks() -> dict[str, str]:
    text = require_shared(PROTOCOL, "the paper's prompt protocol").read_text(encoding="utf-8")
    return {
        name: body
        for name, body in re.findall(r"## (\w+)[^\n]*\n```\n(.*?)```", text, flags=re.S)
    }


@pytest.mark.parametrize("name", ["medpalm_five_choice_cot", "medpalm_five_choice_cot_ja", "alpaca", "alpaca_ja"])
def test_templates_match_the_protocol_verbatim(name: str) -> None:
    assert get_template(name).text == _protocol_blocks()[name]


def test_four_choice_variants_differ_only_in_the_count() -> None:
    assert get_template("medpalm_four_choice_cot").text == get_template("medpalm_five_choice_cot").text.replace(
        "from the five options", "from the four options"
    )
    assert get_template("medpalm_four_choice_cot_ja").text == get_template("medpalm_five_choice_cot_ja").text.replace(
        "5つの選択肢", "4つの選択肢"
    )


def test_render_joins_choices_with_a_bare_comma() -> None:
    prompt = render(get_template("medpalm_five_choice_cot_ja"), "問題文", ["甲", "乙", "丙", "丁", "戊"])
    assert "### 入力：\n問題文\n甲,乙,丙,丁,戊\n### 応答：\n" in prompt
    assert prompt.endswith("### 応答：\n")


def test_three_shot_inserts_examples_before_the_target() -> None:
    template = get_template("medpalm_five_choice_cot")
    prompt = render(template, "Target question?", ["A", "B"], shots=3)
    assert prompt.count("### Input:") == 4
    assert prompt.index("Renal hypoplasia") < prompt.index("Target question?")
    assert "### Response:\nOxygen deficiency, Hydrogen sulfide poisoning\n" in prompt
    one_shot = render(template, "Target question?", ["A", "B"], shots=1)
    assert one_shot.count("### Input:") == 2 and "Renal hypoplasia" not in one_shot


def test_template_errors_are_clear() -> None:
    with pytest.raises(TemplateError, match="zero-shot only"):
        render(get_template("alpaca"), "Q", ["a", "b"], shots=1)
    with pytest.raises(TemplateError, match="shots must be one of"):
        render(get_template("medpalm_five_choice_cot"), "Q", ["a", "b"], shots=2)
    with pytest.raises(TemplateError, match="Unknown template"):
        get_template("medpalm")


def test_defaults_attribution_and_system_prompts() -> None:
    assert default_template("ja", 5).name == "medpalm_five_choice_cot_ja"
    assert default_template("en", 4).name == "medpalm_four_choice_cot"
    assert len(paper_templates()) == 6
    assert "arXiv:2409.11783" in attribution() and "CC-BY-SA-4.0" in attribution()
    assert "担当医" in system_prompt("ja") and "physician" in system_prompt("en")


@pytest.mark.parametrize(
    ("text", "lang"),
    [("胸痛の鑑別は？", "ja"), ("カルテ", "ja"), ("What causes chest pain?", "en"), ("123 mg/dL", "en")],
)
def test_language_detection(text: str, lang: str) -> None:
    assert detect_language(text) == lang


def test_language_override() -> None:
    assert resolve_language("胸痛", "en") == "en"
    assert resolve_language("chest pain", "auto") == "en"
    with pytest.raises(ValueError):
        resolve_language("x", "fr")
