"""Write a GGUF with Qwen2-7B's exact shapes and random weights, for speed and memory figures.

Shapes as Qwen2-7B(-Instruct) and so JMedLLM-v1-7B: 28 layers, hidden 3584, feed-forward 18944,
28 attention heads over 4 KV heads, vocabulary 152064 (the demo model's tokenizer, padded with
unused ``[PAD<n>]`` tokens as llama.cpp's converter pads Qwen2-7B's), untied output. The weights
are N(0, 0.02) in F16, drawn on every core and streamed tensor by tensor (memory stays near one
tensor), then quantized with llama.cpp's own quantizer. Prompt evaluation and decoding cost what
the real model's do; the text it writes is noise and never ends a line, so cap answers when
timing (``bench_igakuqa.py --answer-tokens``). Never commit the output (about 4.4 GiB in Q4_K_M).

    .venv/bin/python scripts/make_random_7b.py --out /tmp/random-7b-q4_k_m.gguf

On a machine without the demo model (a lent GPU machine), take the tokenizer from a small file
written where the demo model is (a GGUF with the padded tokenizer and no tensors, about 6 MB):

    .venv/bin/python scripts/make_random_7b.py --tokenizer-only --out .gpu/serve/tokenizer.gguf
    python3 scripts/make_random_7b.py --tokenizer-from .gpu/serve/tokenizer.gguf --out /tmp/random-7b-q4_k_m.gguf
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gguf
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qwen2_shapes import CONTEXT_LENGTH, QWEN2_7B, RMS_NORM_EPS, ROPE_THETA, kv_width

from app.demo_model import ensure_demo_model
from model_tools.quantize import QUANT_TYPES, quantize

HIDDEN, FEED_FORWARD, LAYERS = QWEN2_7B["hidden_size"], QWEN2_7B["intermediate_size"], QWEN2_7B["num_hidden_layers"]
HEADS, KV_HEADS, VOCAB = QWEN2_7B["num_attention_heads"], QWEN2_7B["num_key_value_heads"], QWEN2_7B["vocab_size"]
KV_WIDTH = kv_width(QWEN2_7B)
DRAW_BLOCKS = 16  # row blocks per weight, each with its own generator: the values do not depend on the core count


def tensor_shapes() -> dict[str, tuple[int, ...]]:
    """llama.cpp's Qwen2 tensor names and their numpy shapes (rows, columns)."""
    shapes: dict[str, tuple[int, ...]] = {"token_embd.weight": (VOCAB, HIDDEN), "output_norm.weight": (HIDDEN,),
                                          "output.weight": (VOCAB, HIDDEN)}
    for n in range(LAYERS):
        shapes |= {f"blk.{n}.attn_norm.weight": (HIDDEN,), f"blk.{n}.ffn_norm.weight": (HIDDEN,),
                   f"blk.{n}.attn_q.weight": (HIDDEN, HIDDEN), f"blk.{n}.attn_q.bias": (HIDDEN,),
                   f"blk.{n}.attn_k.weight": (KV_WIDTH, HIDDEN), f"blk.{n}.attn_k.bias": (KV_WIDTH,),
                   f"blk.{n}.attn_v.weight": (KV_WIDTH, HIDDEN), f"blk.{n}.attn_v.bias": (KV_WIDTH,),
                   f"blk.{n}.attn_output.weight": (HIDDEN, HIDDEN),
                   f"blk.{n}.ffn_gate.weight": (FEED_FORWARD, HIDDEN), f"blk.{n}.ffn_up.weight": (FEED_FORWARD, HIDDEN),
                   f"blk.{n}.ffn_down.weight": (HIDDEN, FEED_FORWARD)}
    return shapes


def tensor_values(name: str, shape: tuple[int, ...], seed: np.random.SeedSequence) -> np.ndarray:
    """Norms are ones (F32, as llama.cpp keeps 1-D tensors); biases zeros; weights N(0, 0.02) in F16."""
    if name.endswith("norm.weight"):
        return np.ones(shape, dtype=np.float32)
    if name.endswith(".bias"):
        return np.zeros(shape, dtype=np.float32)
    return random_f16(shape, seed)


def random_f16(shape: tuple[int, ...], seed: np.random.SeedSequence) -> np.ndarray:
    """N(0, 0.02) in F16, drawn in DRAW_BLOCKS row blocks on every core (numpy's generators release the GIL)."""
    values = np.empty(shape, dtype=np.float16)
    bounds = np.linspace(0, shape[0], DRAW_BLOCKS + 1, dtype=int)

    def draw(block: int, block_seed: np.random.SeedSequence) -> None:
        start, stop = bounds[block], bounds[block + 1]
        drawn = np.random.default_rng(block_seed).standard_normal((stop - start, *shape[1:]), dtype=np.float32)
        drawn *= 0.02
        values[start:stop] = drawn

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(draw, range(DRAW_BLOCKS), seed.spawn(DRAW_BLOCKS)))
    return values


def add_metadata(writer: gguf.GGUFWriter, tokenizer_source: Path) -> None:
    """Qwen2-7B's hyperparameters, and the tokenizer of ``tokenizer_source`` padded to VOCAB tokens."""
    writer.add_name("Random Qwen2-7B shapes (speed figures only)")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_block_count(LAYERS)
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(ROPE_THETA)
    writer.add_layer_norm_rms_eps(RMS_NORM_EPS)
    reader = gguf.GGUFReader(tokenizer_source, "r")
    for field in reader.fields.values():
        if not field.name.startswith("tokenizer."):
            continue
        value = field.contents()
        if field.name == gguf.Keys.Tokenizer.LIST:
            value = value + [f"[PAD{n}]" for n in range(len(value), VOCAB)]
        elif field.name == gguf.Keys.Tokenizer.TOKEN_TYPE:
            value = value + [gguf.TokenType.UNUSED] * (VOCAB - len(value))
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, value_type, sub_type=sub_type)


def write_f16(target: Path, tokenizer_source: Path, seed: int = 0) -> Path:
    """The F16 GGUF at ``target``, one tensor generated and written at a time."""
    writer = gguf.GGUFWriter(target, "qwen2")
    add_metadata(writer, tokenizer_source)
    shapes = tensor_shapes()
    for name, shape in shapes.items():
        dtype = np.float32 if len(shape) == 1 else np.float16
        writer.add_tensor_info(name, shape, np.dtype(dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    seeds = np.random.SeedSequence(seed).spawn(len(shapes))
    for n, ((name, shape), tensor_seed) in enumerate(zip(shapes.items(), seeds, strict=True), start=1):
        writer.write_tensor_data(tensor_values(name, shape, tensor_seed))
        print(f"\r  F16 tensors {n}/{len(shapes)}", end="", flush=True)
    print()
    writer.close()
    return target


def write_tokenizer(target: Path, tokenizer_source: Path) -> Path:
    """A GGUF holding only the metadata (the padded tokenizer), for ``--tokenizer-from`` elsewhere."""
    writer = gguf.GGUFWriter(target, "qwen2")
    add_metadata(writer, tokenizer_source)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="The quantized GGUF to write.")
    parser.add_argument("--quant", default="Q4_K_M", choices=QUANT_TYPES)
    parser.add_argument("--tokenizer-from", type=Path, help="A GGUF whose tokenizer to use (default: the demo model).")
    parser.add_argument("--tokenizer-only", action="store_true",
                        help="Write only the padded tokenizer (a GGUF with no tensors) to --out.")
    args = parser.parse_args()
    tokenizer_source = args.tokenizer_from or ensure_demo_model(progress=False)
    if args.tokenizer_only:
        print(f"tokenizer only: {write_tokenizer(args.out, tokenizer_source)}")
        return 0
    f16 = args.out.with_name(args.out.stem + ".f16.partial.gguf")
    try:
        print(f"writing {f16} (about 15 GiB, removed after quantizing)")
        write_f16(f16, tokenizer_source)
        print(f"quantizing to {args.quant}: {args.out}")
        quantize(f16, args.out, args.quant)
    finally:
        f16.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
