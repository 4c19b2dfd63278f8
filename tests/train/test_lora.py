"""``train lora`` on a tiny Qwen2: it learns, its adapter loads in peft and converts to GGUF."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from model_tools.train.config import LoraSettings, TrainSettings
from model_tools.train.data import load_pairs
from model_tools.train.trainer import Job, Result, run
from tests.conftest import run_cli

pytestmark = pytest.mark.slow  # one training run of ~40 s on two CPU cores, shared by the tests

SETTINGS = TrainSettings(lr=1e-2, epochs=40, batch_size=2, grad_accum=1, max_length=256, eval_fraction=0.1,
                         seed=1, save_steps=20, logging_steps=10)


def train_small(base: Path, data: Path, out: Path, **changes: object) -> Result:
    settings = TrainSettings(**{**SETTINGS.__dict__, **changes})
    return run(Job("lora", base, load_pairs(data, "ja"), out, settings, LoraSettings(), "ja"), echo=print,
               leakage_sets=[])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, small_base: Path, question_file: Path) -> Result:
    return train_small(small_base, question_file, tmp_path_factory.mktemp("lora") / "adapter")


def _merged(base: Path, adapter: Path) -> Any:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    return PeftModel.from_pretrained(model, adapter).merge_and_unload().eval()


def test_loss_falls_and_manifest(trained: Result) -> None:
    losses = [entry["loss"] for entry in trained.manifest["losses"]]
    assert losses[-1] < 0.3 * losses[0], losses
    names = {p.name for p in trained.out.iterdir()}
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors", "training.json", "tokenizer.json"} <= names
    assert all(n.endswith((".safetensors", ".json", ".md", ".jinja")) for n in names), names
    manifest = json.loads((trained.out / "training.json").read_text())
    assert manifest["hyperparameters"]["lora"]["rank"] == 8 and manifest["hyperparameters"]["max_grad_norm"] == 0.5
    assert set(manifest["libraries"]) >= {"torch", "transformers", "peft", "trl", "accelerate"}
    assert len(manifest["eval_losses"]) == 40 and manifest["data"]["eval"] == 1
    assert manifest["leakage"]["exact"] == 0 and len(manifest["data"]["sha256"]) == 64
    assert "Not for clinical use without validation" in (trained.out / "README.md").read_text()


def test_greedy_answers_reproduce_training_answers(trained: Result, small_base: Path, question_file: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(small_base)
    model = _merged(small_base, trained.out)
    rows = load_pairs(question_file, "ja").rows
    right = 0
    for row in rows:
        ids = tokenizer(row["prompt"], return_tensors="pt").input_ids
        out = model.generate(ids, max_new_tokens=24, do_sample=False, eos_token_id=tokenizer.eos_token_id)
        text = str(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
        right += text.splitlines()[0].strip() == row["completion"] if text.strip() else 0
    assert right >= 6, f"{right}/8 answers reproduced"


@pytest.mark.slow
def test_adapter_converts_to_gguf_with_same_answers(trained: Result, small_base: Path, question_file: Path,
                                                    tmp_path: Path) -> None:
    import llama_cpp
    from transformers import AutoTokenizer

    # the adapter goes straight into the converter, as a user runs it (f32: exact enough to compare tokens)
    built = run_cli("convert", "build", "--base", str(small_base), "--adapter", str(trained.out),
                    "--out", str(tmp_path / "gguf"), "--outtype", "f32", "--quant", "Q8_0", "--no-verify",
                    "--name", "tiny")
    assert built.returncode == 0, built.stderr
    gguf = tmp_path / "gguf" / "tiny-f32.gguf"
    llm = llama_cpp.Llama(str(gguf), n_ctx=512, verbose=False)
    tokenizer = AutoTokenizer.from_pretrained(small_base)
    model = _merged(small_base, trained.out)
    for row in load_pairs(question_file, "ja").rows[:3]:
        ids = tokenizer(row["prompt"], return_tensors="pt").input_ids
        expected = model.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1]:].tolist()
        tokens = llm.tokenize(row["prompt"].encode(), add_bos=False, special=True)
        assert tokens == ids[0].tolist()
        got: list[int] = []
        for token in llm.generate(tokens, temp=0.0, reset=True):
            if token == tokenizer.eos_token_id or len(got) == 12:
                break
            got.append(token)
        assert got == [t for t in expected if t != tokenizer.eos_token_id][:len(got)] and got, (got, expected)
