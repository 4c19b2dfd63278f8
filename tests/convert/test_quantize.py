"""Quantization through llama.cpp: every type loads in the app's engine and generates, and the
quality against F16 is within the thresholds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gguf
import pytest

from app.engines.base import Sampling
from app.engines.local import LocalEngine
from model_tools.quantize import QUANT_TYPES, quantize
from model_tools.verify import quant_quality
from tests.conftest import scratch_folder

FILE_TYPES = {"Q4_K_M": gguf.LlamaFileType.MOSTLY_Q4_K_M, "Q5_K_M": gguf.LlamaFileType.MOSTLY_Q5_K_M,
              "Q6_K": gguf.LlamaFileType.MOSTLY_Q6_K, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}


@pytest.fixture(scope="module")
def real_quants(tmp_path_factory: pytest.TempPathFactory, real_f16: Path) -> Iterator[dict[str, Path]]:
    with scratch_folder(tmp_path_factory, "quants") as folder:
        yield {q: quantize(real_f16, folder / f"real-{q.lower()}.gguf", q, progress=False) for q in QUANT_TYPES}


@pytest.mark.slow
@pytest.mark.parametrize("quant_type", QUANT_TYPES)
def test_quantized_file_loads_and_generates(quant_type: str, real_quants: dict[str, Path], real_f16: Path) -> None:
    path = real_quants[quant_type]
    assert not list(path.parent.glob(".*partial"))
    reader = gguf.GGUFReader(path)
    assert reader.fields["general.file_type"].contents() == FILE_TYPES[quant_type]
    assert path.stat().st_size < real_f16.stat().st_size
    engine = LocalEngine.load(path, n_ctx=2048, n_gpu_layers=0)
    generation = engine.complete("<|im_start|>user\nWhat is the normal adult body temperature?<|im_end|>\n"
                                 "<|im_start|>assistant\n", Sampling.greedy(max_tokens=24))
    assert len(generation.text.strip()) > 5, generation.text


@pytest.mark.slow
def test_quantization_quality_against_f16(real_quants: dict[str, Path], real_f16: Path) -> None:
    result = quant_quality(real_f16, real_quants)
    assert result["text_tokens"] > 200
    for quant_type, entry in result["types"].items():
        assert entry["passed"], (quant_type, entry)
    kl = {q: e["mean_kl"] for q, e in result["types"].items()}
    assert kl["Q8_0"] < kl["Q6_K"] < kl["Q4_K_M"], kl  # more bits, closer to F16
    assert result["passed"]


def test_quantize_failure_leaves_nothing(tmp_path: Path) -> None:
    from model_tools.checkpoint import ConvertError

    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ConvertError, match="failed to quantize"):
        quantize(bogus, tmp_path / "out.gguf", "Q8_0", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bogus.gguf"]
