#!/usr/bin/env python
"""Serving a ward: 1, 2, 4 and 8 clients streaming chat answers at once through `jmedllm serve`'s API.

The same run starts `jmedllm serve` twice on loopback, one after the other (never both at once, so
they do not share the CPU): with the ``local`` engine (one answer at a time) and with
``llama-server --parallel N``. Each client is the official ``openai`` package streaming a chat
answer of a fixed length (``--tokens``; the question asks for more than that, so every answer runs
to the limit). Prints, per engine and number of clients: aggregate generated tokens/s, per-client
tokens/s, p50/p95 time to first token; then the ratios the serving issue sets as targets.

    .venv/bin/python scripts/bench_serve.py --model demo --tokens 64 --parallel 4
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai

ROOT = Path(__file__).resolve().parent.parent
JMEDLLM = [sys.executable, "-m", "app.cli"]
QUESTION = ("List, one per line and numbered, the causes of acute chest pain that a ward doctor must rule out, "
            "with one sentence on each. Give at least forty.")
CLIENTS = (1, 2, 4, 8)


@dataclass(frozen=True)
class ClientResult:
    tokens: int
    first_token_s: float
    seconds: float


@dataclass(frozen=True)
class Row:
    engine: str
    clients: int
    aggregate_tps: float
    per_client_tps: float
    ttft_p50: float
    ttft_p95: float


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(engine_args: list[str], key: str, log: Path) -> tuple[subprocess.Popen, str]:
    """`jmedllm serve` with ``engine_args`` on a free loopback port; returns the process and its /v1 URL."""
    port = free_port()
    env = {**os.environ, "JMEDLLM_API_KEYS": key}
    process = subprocess.Popen([*JMEDLLM, "serve", "--port", str(port), "--db", str(log.with_suffix(".db")),
                                *engine_args], cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 900  # a first llama-server build takes minutes
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"jmedllm serve exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {key}"}, timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(1)
    process.kill()
    sys.exit("jmedllm serve did not start")


def one_client(client: openai.OpenAI, model: str, tokens: int) -> ClientResult:
    start = time.perf_counter()
    first = None
    count = 0
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": QUESTION}], max_tokens=tokens, temperature=0,
        stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and first is None:
            first = time.perf_counter() - start
        if chunk.usage is not None:
            count = chunk.usage.completion_tokens
    seconds = time.perf_counter() - start
    return ClientResult(count, first or seconds, seconds)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(name: str, url: str, key: str, tokens: int) -> list[Row]:
    # beyond its slots plus its queue the server answers 429 with Retry-After; the client waits and retries
    client = openai.OpenAI(base_url=url, api_key=key, max_retries=20, timeout=600)
    model = client.models.list().data[0].id
    one_client(client, model, 8)  # warm-up
    rows = []
    for n in CLIENTS:
        start = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            results = list(pool.map(lambda _: one_client(client, model, tokens), range(n)))
        wall = time.perf_counter() - start
        ttfts = [r.first_token_s for r in results]
        rows.append(Row(name, n, sum(r.tokens for r in results) / wall,
                        statistics.mean(r.tokens / r.seconds for r in results),
                        statistics.median(ttfts), percentile(ttfts, 0.95)))
        print(f"{name:<24} {n:>2} clients: {rows[-1].aggregate_tps:6.1f} tok/s aggregate, "
              f"{rows[-1].per_client_tps:5.1f} per client, TTFT p50 {rows[-1].ttft_p50:5.2f} s "
              f"p95 {rows[-1].ttft_p95:5.2f} s", flush=True)
    return rows


def single_decode(url: str, key: str, tokens: int) -> float:
    """One client's decode speed: tokens after the first over the time after it."""
    client = openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=600)
    model = client.models.list().data[0].id
    result = one_client(client, model, tokens)
    return (result.tokens - 1) / (result.seconds - result.first_token_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--tokens", type=int, default=64, help="answer length per client")
    parser.add_argument("--parallel", type=int, default=4, help="llama-server slots")
    parser.add_argument("--ctx", type=int, default=2048, help="context per answer")
    parser.add_argument("--gpu-layers", default="auto")
    parser.add_argument("--decode-runs", type=int, default=7)
    args = parser.parse_args()
    key = secrets.token_urlsafe(32)
    common = ["--model", args.model, "--ctx", str(args.ctx), "--gpu-layers", args.gpu_layers]
    engines = {"local": ["--engine", "local"],
               f"llama-server --parallel {args.parallel}": ["--engine", "llama-server", "--parallel",
                                                            str(args.parallel)]}
    table: dict[str, list[Row]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # both servers up at once, measured one at a time (an idle server takes no CPU): the single-client
        # decode runs alternate between them, so the machine's state affects both alike
        started = {name: start([*common, *engine_args], key, Path(tmp) / f"{name.split()[0]}.log")
                   for name, engine_args in engines.items()}
        try:
            speeds: dict[str, list[float]] = {name: [] for name in engines}
            for _ in range(args.decode_runs):
                for name, (_, url) in started.items():
                    speeds[name].append(single_decode(url, key, args.tokens))
            decode = {name: statistics.median(values) for name, values in speeds.items()}
            for name in engines:
                print(f"{name:<24} one client decode: {decode[name]:.1f} tok/s (median of {args.decode_runs})",
                      flush=True)
            for name, (_, url) in started.items():
                table[name] = measure(name, url, key, args.tokens)
        finally:
            for process, _ in started.values():
                process.terminate()
                process.wait(timeout=60)
    local, served = (table[name] for name in engines)
    at4 = next((a, b) for a, b in zip(local, served, strict=True) if a.clients == 4)
    print("\n| engine | clients | aggregate tok/s | per-client tok/s | TTFT p50 s | TTFT p95 s |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in (*local, *served):
        print(f"| {row.engine} | {row.clients} | {row.aggregate_tps:.1f} | {row.per_client_tps:.1f} | "
              f"{row.ttft_p50:.2f} | {row.ttft_p95:.2f} |")
    local_name, served_name = engines
    print(f"\nat 4 clients: aggregate {at4[1].aggregate_tps / at4[0].aggregate_tps:.2f}x the local engine "
          f"(target >= 2), p95 time to first token {at4[1].ttft_p95 / at4[0].ttft_p95:.2f}x (target <= 0.5)")
    print(f"one client: llama-server decodes at {decode[served_name] / decode[local_name]:.3f} of the local "
          f"engine (target >= 0.95)")


if __name__ == "__main__":
    main()
