"""``train pretrain``: full-parameter continued pre-training on packed text; the result loads in transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model_tools.train.config import TrainSettings
from model_tools.train.data import load_corpus
from model_tools.train.trainer import Job, run

CORPUS = "\n".join(["心臓は血液を全身に送り出すポンプである。", "肝臓は代謝と解毒を担う臓器である。",
                    "腎臓は血液を濾過して尿を作る。", "肺は酸素と二酸化炭素を交換する。"] * 4)


@pytest.mark.slow
def test_full_parameter_pretrain(tmp_path: Path, small_base: Path) -> None:
    from transformers import AutoModelForCausalLM

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text(CORPUS, encoding="utf-8")
    (corpus / "b.txt").write_text(CORPUS[::-1], encoding="utf-8")
    settings = TrainSettings(lr=3e-3, epochs=8, batch_size=2, grad_accum=1, max_length=64, eval_fraction=0.1,
                             seed=3, save_steps=50, logging_steps=5)
    result = run(Job("pretrain", small_base, load_corpus(corpus), tmp_path / "out", settings, None), echo=print,
                 leakage_sets=[])
    losses = [entry["loss"] for entry in result.manifest["losses"]]
    assert losses[-1] < 0.5 * losses[0], losses
    names = sorted(p.name for p in result.out.iterdir())
    assert "model.safetensors" in names and "config.json" in names and "tokenizer.json" in names
    assert all(n.endswith((".safetensors", ".json", ".md", ".jinja")) for n in names), names
    manifest = json.loads((result.out / "training.json").read_text())
    assert manifest["method"] == "MFPT" and manifest["output"] == "full-model" and manifest["data"]["kind"] == "corpus"
    model = AutoModelForCausalLM.from_pretrained(result.out, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(small_base, dtype=torch.float32)
    assert not torch.equal(model.model.layers[0].mlp.up_proj.weight, base.model.layers[0].mlp.up_proj.weight)
