"""Bad inputs are clear errors and write nothing."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.bench.loaders.question_set import read_questions
from model_tools.train import run_dir, trainer
from model_tools.train.config import LoraSettings, TrainSettings
from model_tools.train.data import load_corpus, load_pairs, split
from model_tools.train.errors import TrainError
from model_tools.train.leakage import LeakageFound
from tests.conftest import REPO_ROOT, assert_clean_error
from tests.train.conftest import question_rows, write_jsonl

TRAIN = [sys.executable, "-m", "model_tools.train.cli"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TRAIN, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def _lora(tmp_path: Path, data: Path) -> subprocess.CompletedProcess[str]:
    """``train lora --data DATA``: the data is read before the base, so no checkpoint is needed."""
    return _cli("lora", "--base", str(tmp_path / "base"), "--data", str(data), "--out", str(tmp_path / "out"))


def _job(base: Path, data: Path, out: Path, **lora: object) -> trainer.Job:
    return trainer.Job("lora", base, load_pairs(data, "ja"), out, TrainSettings(epochs=1, batch_size=2),
                       LoraSettings(**lora), "ja")  # type: ignore[arg-type]


def test_empty_file(tmp_path: Path, small_base: Path) -> None:
    data = tmp_path / "empty.jsonl"
    data.write_text("\n")
    result = _cli("lora", "--base", str(small_base), "--data", str(data), "--out", str(tmp_path / "out"))
    assert result.returncode == 1 and "the file is empty" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_malformed_line_named_by_file_and_line(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "qs.jsonl", question_rows()[:2])
    data.write_text(data.read_text() + '{"id": "x", "question": \n')
    with pytest.raises(TrainError, match=r"qs\.jsonl:3"):
        load_pairs(data, "ja")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"instruction": "a", "response": "b"}\n{"instruction": "c"}\n')
    with pytest.raises(TrainError, match=r"pairs\.jsonl:2"):
        load_pairs(pairs, "ja")


def test_base_that_is_not_qwen2(tmp_path: Path, small_base: Path, question_file: Path) -> None:
    base = tmp_path / "llama"
    shutil.copytree(small_base, base)
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    result = _cli("lora", "--base", str(base), "--data", str(question_file), "--out", str(tmp_path / "out"))
    assert result.returncode == 1 and "only the Qwen2 family" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_not_enough_disk_space(tmp_path: Path, small_base: Path, question_file: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trainer, "free_bytes", lambda folder: 1024)
    with pytest.raises(TrainError, match="not enough free disk space"):
        trainer.run(_job(small_base, question_file, tmp_path / "out"), leakage_sets=[])
    assert not (tmp_path / "out").exists()


def test_existing_output_folder(tmp_path: Path, small_base: Path, question_file: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "adapter_model.safetensors").write_bytes(b"x")
    with pytest.raises(TrainError, match="not a training run"):
        trainer.run(_job(small_base, question_file, out), leakage_sets=[])
    (out / "training.json").write_text("{}")
    with pytest.raises(TrainError, match="--overwrite"):
        trainer.run(_job(small_base, question_file, out), leakage_sets=[])
    assert sorted(p.name for p in out.iterdir()) == ["adapter_model.safetensors", "training.json"]


def test_leaked_benchmark_question_stops_training(tmp_path: Path, small_base: Path) -> None:
    from app.bench.data import Dataset

    rows = question_rows()
    bench_row = {"id": "b1", "question": "急性心筋梗塞の初期治療として最も適切な薬剤はどれか。",
                 "choices": ["アスピリン", "インスリン", "ワルファリン", "ヘパリン", "モルヒネ"], "answer": "a"}
    data = write_jsonl(tmp_path / "qs.jsonl", [*rows, {**bench_row, "id": "leak"}])
    line = json.dumps(bench_row, ensure_ascii=False).encode()
    bench = Dataset(root=tmp_path, questions=read_questions(line, "bench.jsonl"), fingerprint="f", name="bench")
    with pytest.raises(LeakageFound, match="--allow-overlap"):
        trainer.run(_job(small_base, data, tmp_path / "out"), leakage_sets=[bench])
    assert not (tmp_path / "out").exists()


def test_qlora_needs_cuda(tmp_path: Path, small_base: Path, question_file: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(TrainError, match="--qlora needs a CUDA GPU"):
        trainer.run(_job(small_base, question_file, tmp_path / "out", qlora=True), leakage_sets=[])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("option", "value"), [("--lr", "-1"), ("--lr", "nan"), ("--epochs", "0"),
                                               ("--epochs", "inf"), ("--grad-clip", "nan")])
def test_numbers_that_cannot_train_are_refused_before_anything_is_written(
        option: str, value: str, tmp_path: Path, small_base: Path, question_file: Path) -> None:
    result = _cli("lora", "--base", str(small_base), "--data", str(question_file), "--out", str(tmp_path / "out"),
                  option, value)
    assert result.returncode == 2 and "is not a positive, finite number" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_a_folder_or_another_non_file_is_named_as_such(tmp_path: Path) -> None:
    folder = tmp_path / "questions"
    folder.mkdir()
    assert_clean_error(_lora(tmp_path, folder), f"{folder} is a folder; --data expects a file: a JSONL or CSV")
    assert not (tmp_path / "out").exists()
    with pytest.raises(TrainError, match="is not a regular file; --corpus expects a UTF-8 text file or a folder"):
        load_corpus(Path(os.devnull))
    with pytest.raises(TrainError, match=r"nope\.jsonl not found; --data expects a file"):
        load_pairs(tmp_path / "nope.jsonl", "ja")


def test_an_unreadable_file_or_folder_is_a_clear_error(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "qs.jsonl", question_rows())
    locked = tmp_path / "corpus" / "locked"
    locked.mkdir(parents=True)
    (locked.parent / "a.txt").write_text("doc\n")
    (locked / "b.txt").write_text("doc\n")
    data.chmod(0)
    locked.chmod(0)
    try:
        try:
            data.read_bytes()
        except PermissionError:
            pass
        else:
            pytest.skip("this user reads files whatever their mode (root)")
        with pytest.raises(TrainError, match=f"cannot read {re.escape(str(data))}: Permission denied"):
            load_pairs(data, "ja")  # the CLI's own check (click) refuses an unreadable --data or --corpus path
        result = _cli("pretrain", "--base", str(tmp_path / "base"), "--corpus", str(locked.parent),
                      "--out", str(tmp_path / "out"))  # a subfolder that cannot be listed: it was skipped
        assert_clean_error(result, f"cannot read {locked}: Permission denied")
    finally:
        data.chmod(0o644)
        locked.chmod(0o755)


def test_a_binary_file_is_reported_as_not_utf8_text(tmp_path: Path) -> None:
    image = tmp_path / "scan.jsonl"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    assert_clean_error(_lora(tmp_path, image), "scan.jsonl:1: not valid UTF-8 (byte 0x89); save the file as UTF-8. "
                       "--data expects a file: a JSONL or CSV question set, or instruction/response JSONL")
    assert not (tmp_path / "out").exists()
    pairs = tmp_path / "pairs.jsonl"  # Shift_JIS: it was read with U+FFFD in place of the Japanese
    pairs.write_bytes('{"instruction": "a", "response": "b"}\n{"instruction": "心臓", "response": "肺"}\n'
                      .encode("cp932"))
    with pytest.raises(TrainError, match=r"pairs\.jsonl:2: not valid UTF-8 \(byte 0x90\)"):
        load_pairs(pairs, "ja")
    corpus = tmp_path / "notes.txt"
    corpus.write_bytes("doc\n心臓\n".encode("cp932"))
    with pytest.raises(TrainError, match=r"notes\.txt:2: not valid UTF-8 \(byte 0x90\); save the file as UTF-8\. "
                                         "--corpus expects a UTF-8 text file"):
        load_corpus(corpus)


def test_a_byte_order_mark_is_allowed(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "qs.jsonl", question_rows())
    data.write_bytes(b"\xef\xbb\xbf" + data.read_bytes())  # as Notepad and Excel save UTF-8; the benchmark reads it
    assert load_pairs(data, "ja").kind == "question-set"


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--seed", "-1", "-1 is not in the range 0<=x<=4294967295"),
    ("--seed", str(2**32), "is not in the range"),  # numpy's generator takes 32 bits
    ("--lr", "1e300", "1e+300 is above 1"),  # overflowed float32 in the optimizer
])
def test_out_of_range_numbers_are_refused(option: str, value: str, message: str, tmp_path: Path,
                                          question_file: Path) -> None:
    result = _cli("lora", "--base", str(tmp_path), "--data", str(question_file), "--out", str(tmp_path / "out"),
                  option, value)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_eval_fraction_near_one_still_trains_on_something() -> None:
    rows = [{"text": str(i)} for i in range(8)]
    train, held = split(rows, 0.99, seed=0)
    assert len(train) == 1 and len(held) == 7


def test_unknown_target_module_is_refused_before_anything_is_written(tmp_path: Path, small_base: Path,
                                                                     question_file: Path) -> None:
    job = _job(small_base, question_file, tmp_path / "out", target_modules=("q_proj", "lm_head"))
    with pytest.raises(TrainError, match="have no linear layer lm_head; choose from down_proj, gate_proj"):
        trainer.run(job, leakage_sets=[])
    assert not (tmp_path / "out").exists()


def test_max_length_that_leaves_no_room_for_the_answer(tmp_path: Path, small_base: Path,
                                                       question_file: Path) -> None:
    job = trainer.Job("lora", small_base, load_pairs(question_file, "ja"), tmp_path / "out",
                      TrainSettings(max_length=16), LoraSettings(), "ja")
    with pytest.raises(TrainError, match=r"8 of 8 example\(s\) have a prompt of --max-length \(16\) tokens or more"):
        trainer.run(job, leakage_sets=[])
    assert not (tmp_path / "out").exists()


def test_out_below_a_file(tmp_path: Path, small_base: Path, question_file: Path) -> None:
    (tmp_path / "notes").write_text("x")
    out = tmp_path / "notes" / "out"
    result = _cli("lora", "--base", str(small_base), "--data", str(question_file), "--out", str(out))
    assert_clean_error(result, f"--out {out}: {tmp_path / 'notes'} is a file, not a folder")


def test_a_run_that_failed_before_its_first_checkpoint_does_not_block_another(tmp_path: Path) -> None:
    folder = run_dir.checkpoints_dir(tmp_path)
    folder.mkdir()
    (folder / run_dir.RUN_FILE).write_text(json.dumps({"settings_hash": "an earlier command's"}))
    assert run_dir.prepare(tmp_path, "this command's", resume=True, overwrite=False) is None
    (folder / "checkpoint-3").mkdir()
    with pytest.raises(TrainError, match="other data or settings"):
        run_dir.prepare(tmp_path, "this command's", resume=True, overwrite=False)


def test_a_corpus_file_is_named_by_its_path(tmp_path: Path) -> None:
    for chapter in ("ch1", "ch2"):  # the same file name in two subfolders
        (tmp_path / chapter).mkdir()
        (tmp_path / chapter / "notes.txt").write_text("doc\n", encoding="utf-8")
    (tmp_path / "ch2" / "notes.txt").write_bytes("心臓\n".encode("cp932"))
    with pytest.raises(TrainError, match=re.escape(f"{tmp_path / 'ch2' / 'notes.txt'}:1: not valid UTF-8")):
        load_corpus(tmp_path)


def test_a_publish_cut_short_is_finished_by_the_same_command(tmp_path: Path, small_base: Path, question_file: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed while the finished model moves into OUT (here: over an older model, with --overwrite), OUT is an
    unfinished run that the same command completes: no mix of the two models, no folder it refuses."""
    out = tmp_path / "out"
    trainer.run(_job(small_base, question_file, out), leakage_sets=[])
    replace = os.replace
    moved: list[object] = []

    def cut_short(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        if Path(target).parent == out:
            if moved:
                raise KeyboardInterrupt  # before the second file of the new model
            moved.append(target)
        replace(source, target)

    again = dataclasses.replace(_job(small_base, question_file, out, rank=4), overwrite=True)
    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", cut_short)
        with pytest.raises(KeyboardInterrupt):
            trainer.run(again, leakage_sets=[])
    assert not (out / "training.json").exists() and len(moved) == 1
    result = trainer.run(dataclasses.replace(again, overwrite=False), leakage_sets=[])
    manifest = json.loads((out / "training.json").read_text(encoding="utf-8"))
    assert manifest["hyperparameters"]["lora"]["rank"] == 4 and not (out / "checkpoints").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in result.files)
