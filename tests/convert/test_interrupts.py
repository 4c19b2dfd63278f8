"""A Ctrl-C that Python loses (raised inside a ``__del__``, a weakref or ctypes callback) still stops a
conversion at the next tensor, with nothing kept. Run in a child process: it changes signal handlers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

LOSE_A_CTRL_C = """
import os, signal, sys
from pathlib import Path
from model_tools.checkpoint import open_base
from model_tools.gguf_export import export_gguf
from model_tools.interrupts import stop_on_signals

stop_on_signals()

class Finalizer:
    def __del__(self):  # a KeyboardInterrupt raised in here is printed as "Exception ignored" and dropped
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(100_000))

Finalizer()
print("survived the Ctrl-C", flush=True)
try:
    export_gguf(open_base(Path(sys.argv[1])), None, Path(sys.argv[2]), progress=False)
except KeyboardInterrupt:
    print("stopped", flush=True)
"""


def test_a_lost_ctrl_c_stops_the_export_with_nothing_kept(tmp_path: Path, tiny_dir: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-c", LOSE_A_CTRL_C, str(tiny_dir), str(out / "m.gguf")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Exception ignored" in proc.stderr  # the interrupt really was lost by Python...
    assert proc.stdout.split() == ["survived", "the", "Ctrl-C", "stopped"]  # ...and still stopped the export
    assert list(out.iterdir()) == []
