"""Choosing an engine from the command line: settings that do not fit together fail before anything
loads, starts or connects, with a message that says what to do (real `jmedllm` subprocesses)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.engines.factory import EngineSpec, checked_spec, read_key_file
from app.engines.remote import EndpointError, checked_url
from app.security import AuthError
from tests.bench.conftest import write_block
from tests.conftest import assert_clean_error, free_port, run_cli


@pytest.mark.parametrize(("args", "expected"), [
    (["--engine", "openai"], "--engine openai needs --engine-url"),
    (["--engine", "openai", "--engine-url", "http://10.1.2.3:8000/v1"], "--allow-plain-http"),
    (["--engine", "openai", "--engine-url", "ftp://gpu/v1"], "must be http(s)://"),
    (["--engine", "local", "--parallel", "2"], "--engine llama-server"),
    (["--engine-url", "https://gpu:8000/v1"], "are for --engine openai"),
])
def test_settings_that_do_not_fit_fail_before_anything_starts(args: list[str], expected: str) -> None:
    assert_clean_error(run_cli("ask", "頭痛の原因は？", *args, timeout=60), expected)


def test_an_endpoint_that_is_down_is_named_in_the_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    result = run_cli("ask", "頭痛の原因は？", "--engine", "openai", "--engine-url", url, timeout=60)
    assert_clean_error(result, f"Cannot reach the engine at {url}")


def test_an_engine_key_file_must_be_private_and_hold_a_key(tmp_path: Path) -> None:
    key_file = tmp_path / "key.txt"
    key_file.write_text("# the GPU server's key\nsk-hospital-0123456789abcdef\n")
    os.chmod(key_file, 0o644)
    spec = EngineSpec(kind="openai", url="https://gpu:8000/v1", key_file=key_file)
    with pytest.raises(AuthError, match="engine key file .* readable or writable by other users"):
        checked_spec(spec)
    os.chmod(key_file, 0o600)
    assert read_key_file(key_file) == "sk-hospital-0123456789abcdef"
    key_file.write_text("# nothing here\n\n")
    with pytest.raises(EndpointError, match="holds no key"):
        read_key_file(key_file)


def test_plain_http_is_for_loopback_or_an_explicit_decision() -> None:
    assert checked_url("http://127.0.0.1:8080/v1/") == "http://127.0.0.1:8080/v1"
    assert checked_url("https://gpu.hospital.local/v1") == "https://gpu.hospital.local/v1"
    with pytest.raises(EndpointError, match="unencrypted"):
        checked_url("http://gpu.hospital.local/v1")
    assert checked_url("http://gpu.hospital.local/v1", allow_plain_http=True) == "http://gpu.hospital.local/v1"


def test_loglik_on_a_served_engine_is_refused_with_the_reason(tmp_path: Path) -> None:
    data = write_block(tmp_path / "igakuqa", n=2)
    result = run_cli("bench", "run", "--engine", "openai", "--engine-url", "http://127.0.0.1:9/v1",
                     "--mode", "loglik", "--data-dir", str(data), "--db", str(tmp_path / "b.db"), timeout=60)
    assert_clean_error(result, "runs on the local engine only")
