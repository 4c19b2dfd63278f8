"""Every malformed input gives a message naming the file, line and field, through the real CLI, without a
traceback; and the question, database and data are checked before any model loads."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from tests.bench.conftest import write_block
from tests.conftest import assert_clean_error, run_cli

ROW = {"problem_id": "116A1", "problem_text": "問題1", "choices": ["あ", "い", "う", "え", "お"], "text_only": True,
       "answer": ["a"], "points": "1"}
META = {"problem_id": "116A1", "category": "test", "kinki": [], "human_accuracy": "50.0"}


def with_row(**changes: object) -> list[str]:
    return [json.dumps({**ROW, **changes}, ensure_ascii=False)]


def with_meta(**changes: object) -> list[str]:
    return [json.dumps({**META, **changes}, ensure_ascii=False)]


def invalid_utf8(root: Path) -> None:
    path = root / "data" / "2022" / "116-A.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace("問題2".encode(), b"\x82\xa0\x96\xe2")  # Shift_JIS bytes
    path.write_bytes(b"".join(lines))


IGAKUQA_CASES: dict[str, tuple[dict[str, list[str]], Callable[[Path], None] | None, str]] = {
    "invalid UTF-8": ({}, invalid_utf8, "2022/116-A.jsonl:2: not valid UTF-8"),
    "problem_id a list": ({"": with_row(problem_id=["116A1"])}, None,
                          "2022/116-A.jsonl:1: field 'problem_id' is not a string"),
    "kinki not a list": ({"_metadata": with_meta(kinki="a")}, None,
                         "2022/116-A_metadata.jsonl:1: 116A1 field 'kinki' has the wrong type"),
    "kinki of numbers": ({"_metadata": with_meta(kinki=[1])}, None,
                         "2022/116-A_metadata.jsonl:1: 116A1 field 'kinki' is not a list of strings"),
    "answer of numbers": ({"": with_row(answer=[1])}, None,
                          "2022/116-A.jsonl:1: 116A1 field 'answer' is not a list of strings"),
    "answer a string": ({"": with_row(answer="a")}, None,
                        "2022/116-A.jsonl:1: 116A1 field 'answer' has the wrong type"),
    "choices of objects": ({"": with_row(choices=[{"a": 1}] * 5)}, None,
                           "2022/116-A.jsonl:1: 116A1 field 'choices' is not a list of strings"),
}


def igakuqa_folder(tmp_path: Path, case: str) -> Path:
    overrides, edit, _ = IGAKUQA_CASES[case]
    root = write_block(tmp_path / "igakuqa", n=1 if overrides else 3, **cast(dict[str, Any], overrides))
    if edit:
        edit(root)
    return root


@pytest.mark.parametrize("case", IGAKUQA_CASES)
def test_malformed_igakuqa_file_in_bench_run(case: str, tmp_path: Path) -> None:
    """bench run reports the bad line before the model loads (the model path does not even exist)."""
    data = igakuqa_folder(tmp_path, case)
    result = run_cli("bench", "run", "--data-dir", str(data), "--db", str(tmp_path / "runs.db"),
                     "--model", str(tmp_path / "absent.gguf"))
    assert_clean_error(result, IGAKUQA_CASES[case][2])


@pytest.mark.parametrize("case", ["invalid UTF-8", "kinki not a list"])
def test_malformed_igakuqa_file_in_bench_score(case: str, tmp_path: Path) -> None:
    data = igakuqa_folder(tmp_path, case)
    predictions = tmp_path / "p.jsonl"
    predictions.write_text('{"problem_id": "116A1", "prediction": "a"}\n')
    result = run_cli("bench", "score", "--predictions", str(predictions), "--data-dir", str(data))
    assert_clean_error(result, IGAKUQA_CASES[case][2])


PREDICTION_CASES: dict[str, tuple[bytes, str]] = {
    "invalid UTF-8": (b'{"problem_id": "116A1", "prediction": "a"}\n{"problem_id": "116A2", "response": "\xff"}\n',
                      ":2: not valid UTF-8"),
    "problem_id a list": (b'{"problem_id": ["116A1"], "prediction": "a"}\n', ":1: field 'problem_id' is not a string"),
    "problem_id a number": (b'{"problem_id": 1161, "prediction": "a"}\n', ":1: field 'problem_id' is not a string"),
    "empty": (b"\n\n", "no predictions in "),
    "duplicate": (b'{"problem_id": "116A1", "prediction": "a"}\n{"problem_id": "116A2", "prediction": "b"}\n'
                  b'{"problem_id": "116A1", "prediction": "c"}\n',
                  "problem_id '116A1' appears twice, on lines 1 and 3"),
}


@pytest.mark.parametrize("case", PREDICTION_CASES)
def test_malformed_predictions_file(case: str, tmp_path: Path) -> None:
    data = write_block(tmp_path / "igakuqa")
    content, expected = PREDICTION_CASES[case]
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_bytes(content)
    result = run_cli("bench", "score", "--predictions", str(predictions), "--data-dir", str(data))
    assert_clean_error(result, expected, str(predictions))


def test_valid_predictions_still_score(tmp_path: Path) -> None:
    data = write_block(tmp_path / "igakuqa")
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text('{"problem_id": "116A1", "prediction": "a"}\n{"problem_id": "116A2", "prediction": "b"}\n')
    result = run_cli("bench", "score", "--predictions", str(predictions), "--data-dir", str(data), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["letter"]["correct"] == 1


def test_ask_checks_the_question_before_loading_the_model() -> None:
    """With the real default (demo) model configured, an empty question fails at once."""
    start = time.monotonic()
    result = run_cli("ask", "   ")
    elapsed = time.monotonic() - start
    assert_clean_error(result, "The question is empty.")
    assert elapsed < 2, elapsed


@pytest.mark.parametrize("args", [[b"\xff\xfe what is this?"], [b"Which organ?", "-c", b"Liver\xff", "-c", "Kidney"]])
def test_ask_with_invalid_utf8_bytes(args: list[str | bytes], tmp_path: Path) -> None:
    result = run_cli("ask", *args, "--model", str(tmp_path / "absent.gguf"))
    assert_clean_error(result, "not valid UTF-8")


def safetensors_bytes(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data


def entry(**fields: object) -> bytes:
    info = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], **fields}
    return json.dumps({"model.embed_tokens.weight": info}).encode()


SAFETENSORS_CASES: dict[str, tuple[bytes, str]] = {
    "bad JSON": (safetensors_bytes(b"{not json", bytes(8)), "not a safetensors file"),
    "bad UTF-8": (safetensors_bytes(b'{"\xff\xfe": 1}', bytes(8)), "not a safetensors file"),
    "header not an object": (safetensors_bytes(b"[1, 2]", bytes(8)), "the header is not a JSON object"),
    "header length past EOF": (struct.pack("<Q", 2**63) + b"{}", "bad header length"),
    "offsets past EOF": (safetensors_bytes(entry(shape=[4096], data_offsets=[0, 16384]), bytes(8)),
                         "inconsistent offsets"),
    "negative offsets": (safetensors_bytes(entry(data_offsets=[-8, 0]), bytes(8)), "malformed data_offsets"),
    "reversed offsets": (safetensors_bytes(entry(data_offsets=[8, 0]), bytes(8)), "malformed data_offsets"),
    "negative shape": (safetensors_bytes(entry(shape=[-1, -2]), bytes(8)), "malformed shape"),
    "overflowing shape": (safetensors_bytes(entry(shape=[2**62, 2**62]), bytes(8)), "inconsistent offsets"),
    "entry not an object": (safetensors_bytes(b'{"w": [1, 2]}', bytes(8)), "lacks dtype, shape or data_offsets"),
    "missing data_offsets": (safetensors_bytes(b'{"w": {"dtype": "F32", "shape": [2]}}', bytes(8)),
                             "lacks dtype, shape or data_offsets"),
}


@pytest.mark.parametrize("case", SAFETENSORS_CASES)
def test_malformed_safetensors_header_in_convert(case: str, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 2, "intermediate_size": 2,
        "num_hidden_layers": 1, "num_attention_heads": 1, "vocab_size": 1}))
    content, expected = SAFETENSORS_CASES[case]
    (model / "model.safetensors").write_bytes(content)
    out = tmp_path / "out.gguf"
    result = run_cli("convert", "export", "--model", str(model), "--out", str(out))
    assert_clean_error(result, "Error: model.safetensors: ", expected)
    assert not out.exists()
