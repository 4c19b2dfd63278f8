"""A tiny Qwen2 with a small byte-level BPE vocabulary (so a training step takes milliseconds) and
a synthetic question set it can learn.

The tokenizer is the demo model's Qwen2 tokenizer retrained (``train_new_from_iterator``: the same
byte-level pre-tokenizer, normaliser and special tokens) to a few hundred tokens on the training
prompts: with Qwen2's 151,936 rows the output layer alone makes a step take seconds on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.convert.conftest import tokenizer_dir  # noqa: F401  # the fixture, reused

ORGANS = ("心臓", "肝臓", "腎臓", "肺", "胃", "脳", "膵臓", "脾臓")
DRUGS = ("アスピリン", "インスリン", "ワルファリン", "ヘパリン",
         "モルヒネ", "ペニシリン", "リドカイン", "アトロピン")
TEMPLATE_TEXT = ("### 指示：\n以下は医学知識に関する多肢選択問題です。"
                 "利用可能な情報を要約してから、段階的に解決してください。"
                 "最終的な答えとして5つの選択肢のうちの1つを出力してください。\n### 入力：\n### 応答：\n")


def question_rows() -> list[dict[str, object]]:
    """Eight five-choice questions, each with a different answer text (its first choice, which the tiny model
    can learn to copy: it can hardly learn to map an organ to a drug in a few seconds)."""
    return [{"id": f"q{i}", "question": f"{organ}の病気に使う薬はどれか。",
             "choices": [DRUGS[(i + k) % 8] for k in range(5)],
             "answer": "a"} for i, organ in enumerate(ORGANS)]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def small_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:  # noqa: F811
    from transformers import AutoTokenizer

    texts = [TEMPLATE_TEXT, json.dumps(question_rows(), ensure_ascii=False), "患者 診断 治療 症状 検査 " * 4,
             "The following are multiple choice questions about medical knowledge."]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir).train_new_from_iterator(texts * 4, vocab_size=600)
    folder = tmp_path_factory.mktemp("small-tokenizer")
    tokenizer.save_pretrained(folder)
    return folder


def make_small_qwen2(folder: Path, tokenizer_folder: Path, seed: int = 0) -> Path:
    """A random 2-layer Qwen2, hidden size 64, with the small tokenizer; float32 safetensors.

    The weights are drawn wide (std 0.3): LoRA does not train the output layer, and with the usual 0.02 its
    logits could not grow far enough apart to memorise an answer."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False, rms_norm_eps=1e-6, initializer_range=0.3,
                         bos_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def small_base(tmp_path_factory: pytest.TempPathFactory, small_tokenizer_dir: Path) -> Path:
    return make_small_qwen2(tmp_path_factory.mktemp("small-qwen2"), small_tokenizer_dir)


@pytest.fixture(scope="session")
def question_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "questions.jsonl", question_rows())
