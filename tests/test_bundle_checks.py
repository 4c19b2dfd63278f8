"""``scripts/bundle_checks.py place-server``, which install.sh runs with the new virtualenv's Python:
a place it cannot write is one line for install.sh to show, not a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from app.engines.server_build import BINARY_NAME, llama_cpp_python_version, sdist_name
from tests.conftest import REPO_ROOT


def test_an_unwritable_cache_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    server = tmp_path / "bundle" / "llama-server"
    server.mkdir(parents=True)
    version = llama_cpp_python_version()
    (server / "build.json").write_text(json.dumps({"llama_cpp_python": version}))
    (server / BINARY_NAME).write_bytes(b"\x7fELF")
    (server / sdist_name(version)).write_bytes(b"sdist")
    blocked = tmp_path / "cache-is-a-file"
    blocked.write_text("not a folder")
    result = subprocess.run([sys.executable, "-B", "scripts/bundle_checks.py", "place-server", str(server.parent),
                             str(tmp_path / "prefix")], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                            env={**os.environ, "JMEDLLM_CACHE_DIR": str(blocked / "cache")})
    assert result.returncode == 1
    assert result.stderr.startswith(f"Cannot write {blocked / 'cache'}") and result.stderr.count("\n") == 1, \
        result.stderr
    assert not (tmp_path / "prefix").exists()
