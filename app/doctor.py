"""``jmedllm doctor``: what this machine has and whether the app will run here, checked and explained for IT.

Each check returns a :class:`Check` (a name, ok / warn / fail, one plain sentence, and the facts
behind it); :func:`run_doctor` runs them all into a :class:`Report`. A ``fail`` is a blocking
problem (the command exits non-zero); a ``warn`` works, but less well or not everywhere.

Doctor is side-effect free: it never creates the data, models or cache folder (their paths are
worked out the way :mod:`app.paths` does, without creating them), opens the database read-only
(``mode=ro``, never migrated), builds nothing and downloads nothing. The one cost is the memory
bandwidth measurement: about 0.5 GB of memory for about half a second.
"""

from __future__ import annotations

import mmap
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import llama_cpp

from app import __version__
from app.bench.data import DataError
from app.db import DEFAULT_DB_NAME
from app.demo_model import DEMO_ALIAS, DEMO_FILENAME, DEMO_SIZE
from app.engines.devices import gpu_devices
from app.engines.options import DEFAULT_CONTEXT, default_threads
from app.engines.server_build import (
    BINARY_NAME,
    SDIST_ENV,
    SERVER_ENV,
    BuildOptions,
    llama_cpp_python_version,
    sdist_name,
)
from app.errors import UserError
from app.gguf_metadata import GGUFFormatError, Scalar, read_gguf_metadata
from app.model_card import check_gguf_file, quantization_name
from app.models import MODEL_ENV, find_model_file
from app.paths import cache_dir, data_dir, models_dir
from app.ports import listen_problem
from app.security import is_loopback, is_unspecified

Status = Literal["ok", "warn", "fail"]
OK: Status = "ok"
WARN: Status = "warn"
FAIL: Status = "fail"

MIN_PYTHON = (3, 11)
F16_BYTES = 2  # llama.cpp's default KV cache type
# llama.cpp's compute buffers (about 0.3 GB for a 150k-token vocabulary) and the app itself (about 0.3 GB).
RUNTIME_OVERHEAD_BYTES = 600_000_000
BANDWIDTH_BYTES = 256 * 2**20  # per buffer: copied between two of them, beyond most last-level caches
BANDWIDTH_REPEATS = 3
NVIDIA_SMI_TIMEOUT_S = 5
LOW_DATA_DISK_BYTES = 1_000_000_000
FULL_DISK_BYTES = 100_000_000  # SQLite writes start failing
MODEL_DISK_BYTES = 5_000_000_000  # room for one 7B Q4_K_M
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
X86_FEATURES = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni")


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``name`` (stable, for scripts), a bilingual ``title``, and what was found."""

    name: str
    title: str
    status: Status
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """Every check, in order; ``failed`` when any of them is a blocking problem."""

    checks: tuple[Check, ...]

    @property
    def failed(self) -> bool:
        return any(check.status == FAIL for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"version": __version__, "ok": not self.failed, "checks": [asdict(check) for check in self.checks]}


@dataclass(frozen=True)
class DoctorOptions:
    """What to check against: the model and context ``serve`` would use, its address, its database.

    ``model`` None means ``$JMEDLLM_MODEL`` or the demo model, as ``serve`` has it; ``skip`` names
    checks to leave out (the UI leaves out the port its own server holds).
    """

    model: str | None = None
    n_ctx: int = DEFAULT_CONTEXT
    host: str = "127.0.0.1"
    port: int = 7860
    db_path: Path | None = None
    skip: frozenset[str] = frozenset()


TITLES = {
    "python": "Python",
    "cpu": "CPU",
    "llama.cpp": "llama.cpp",
    "llama-server": "llama-server (--engine llama-server, optional)",
    "memory": "Memory for the model / メモリ (RAM/VRAM)",
    "speed": "Decode speed to expect / 生成速度の目安",
    "disk": "Disk / ディスク",
    "database": "Data folder and database / データベース",
    "igakuqa": "IgakuQA and question sets / 問題セット",
    "network": "No outbound connections / 外部通信なし",
    "port": "Port / ポート",
}


# An offline bundle's install.sh marks its prefix (the virtualenv: sys.prefix) first and copies the bundle's
# manifest there last; the names are those of scripts/bundle_checks.py (MARKER) and assets/bundle/install.sh.
BUNDLE_MARKER = ".jmedllm-bundle"
BUNDLE_MANIFEST = "BUNDLE.json"


class _Skipped(Exception):
    """A check that does not apply here; the message says why."""


def _check(name: str, status: Status, summary: str, details: dict[str, Any] | None = None) -> Check:
    return Check(name, TITLES[name], status, summary, details or {})


MARKS: dict[Status, str] = {OK: "✓", WARN: "!", FAIL: "✗"}


def detail_lines(details: dict[str, Any]) -> list[tuple[str, str]]:
    """A check's details as (key, text) pairs for people; a list of records (GPUs) gives one pair per record."""
    pairs = []
    for key, value in details.items():
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            pairs += [(f"{key}[{index + 1}]", _text(item)) for index, item in enumerate(value)]
        else:
            pairs.append((key, _text(value)))
    return pairs


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key}={_text(item)}" for key, item in value.items()) or "none"
    if isinstance(value, list):
        return ", ".join(_text(item) for item in value) or "none"
    return "unknown" if value is None else str(value)


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:,.1f} GB"


def _size(n_bytes: float) -> str:
    return _gb(n_bytes) if n_bytes >= 1e9 else f"{n_bytes / 1e6:,.1f} MB"


# --- Python, CPU -----------------------------------------------------------------------------------------------


def check_python() -> Check:
    version = platform.python_version()
    details = {"python": version, "executable": sys.executable, "platform": platform.platform(),
               "machine": platform.machine(), "app_version": __version__}
    if sys.version_info < MIN_PYTHON:
        return _check("python", FAIL, f"Python {version} is too old: the app needs Python "
                      f"{'.'.join(map(str, MIN_PYTHON))} or newer.", details)
    prefix = Path(sys.prefix)
    if (prefix / BUNDLE_MARKER).is_file() and not (prefix / BUNDLE_MANIFEST).is_file():
        return _check("python", WARN, f"The offline install in {prefix} did not finish (no {BUNDLE_MANIFEST}): run "
                      f"the bundle's install.sh again with --prefix {prefix}.", details)
    return _check("python", OK, f"Python {version} on {platform.system()} {platform.machine()}.", details)


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip() and fields:
            break
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def check_cpu() -> Check:
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    model = info.get("model name") or info.get("Hardware") or platform.processor() or "unknown"
    machine = platform.machine().lower()
    details: dict[str, Any] = {"model": model, "cores_usable": default_threads(), "cores_total": os.cpu_count()}
    summary = f"{model}, {default_threads()} usable cores (コア)"
    if machine in ("x86_64", "amd64", "i686"):
        details["features"] = {name: name in flags for name in X86_FEATURES}
        present = [name.upper() for name in ("avx2", "avx512f") if name in flags]
        summary += f"; {' and '.join(present) if present else 'no AVX2'}."
        if flags and "avx2" not in flags:
            return _check("cpu", WARN, summary + " llama.cpp runs several times slower without AVX2.", details)
    elif machine in ("aarch64", "arm64"):
        neon = "asimd" in flags or machine == "arm64"  # Apple silicon always has NEON
        details["features"] = {"neon": neon}
        summary += "; NEON." if neon else "; no NEON."
        if not neon:
            return _check("cpu", WARN, summary + " llama.cpp runs several times slower without NEON.", details)
    else:
        summary += "."
    return _check("cpu", OK, summary, details)


# --- llama.cpp, GPUs, llama-server ------------------------------------------------------------------------------


def nvidia_gpus() -> list[dict[str, Any]]:
    """The NVIDIA GPUs ``nvidia-smi`` lists, with memory in bytes (none without the tool or a GPU)."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return []
    try:
        result = subprocess.run([tool, "--query-gpu=name,memory.total,memory.free,driver_version",
                                 "--format=csv,noheader,nounits"], capture_output=True, text=True,
                                timeout=NVIDIA_SMI_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in result.stdout.splitlines() if result.returncode == 0 else []:
        parts = [part.strip() for part in line.rsplit(",", 3)]
        if len(parts) == 4 and parts[1].isdigit() and parts[2].isdigit():
            gpus.append({"name": parts[0], "memory_total": int(parts[1]) * 2**20,
                         "memory_free": int(parts[2]) * 2**20, "driver": parts[3]})
    return gpus


def check_llama_cpp(gpus: list[dict[str, Any]]) -> Check:
    offload = bool(llama_cpp.llama_supports_gpu_offload())
    seen = list(gpu_devices())
    details = {"llama_cpp_python": llama_cpp.__version__, "gpu_offload": offload, "llama_gpus": seen,
               "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(" |"),
               "nvidia_gpus": gpus}
    build = f"llama-cpp-python {llama_cpp.__version__}, {'GPU (CUDA/Metal/...)' if offload else 'CPU-only'} build"
    listed = "; ".join(f"{gpu['name']} {_gb(gpu['memory_total'])} ({_gb(gpu['memory_free'])} free)" for gpu in gpus)
    if offload and seen:
        return _check("llama.cpp", OK, f"{build}; offloads to {', '.join(seen)}"
                      + (f"; {listed}." if listed else "."), details)
    if offload:
        return _check("llama.cpp", WARN, f"{build}, but it sees no GPU, so models run on the CPU: "
                      "check the GPU driver (nvidia-smi).", details)
    if gpus:
        return _check("llama.cpp", WARN, f"{build}, but this machine has a GPU ({listed}): install the "
                      "CUDA bundle (make_bundle.sh --cuda) to answer several times faster.", details)
    return _check("llama.cpp", OK, f"{build}; no GPU on this machine, models run on the CPU.", details)


def check_llama_server() -> Check:
    override = os.environ.get(SERVER_ENV)
    if override:
        usable = os.access(Path(override).expanduser(), os.X_OK) and Path(override).expanduser().is_file()
        details = {"binary": override, "from": f"${SERVER_ENV}", "usable": usable}
        if usable:
            return _check("llama-server", OK, f"${SERVER_ENV} names {override}.", details)
        return _check("llama-server", WARN, f"${SERVER_ENV} is {override}, which is not an executable file: "
                      "--engine llama-server will fail until it is fixed or unset.", details)
    version = llama_cpp_python_version()
    root = cache_dir(create=False) / "llama-server"
    binary = root / BuildOptions.from_environment().key(version) / BINARY_NAME
    sdist = Path(os.environ.get(SDIST_ENV) or root / "sdist" / sdist_name(version)).expanduser()
    details = {"binary": str(binary), "built": binary.is_file(), "source": str(sdist),
               "source_present": sdist.is_file()}
    if binary.is_file():
        return _check("llama-server", OK, f"built for llama-cpp-python {version} at {binary}.", details)
    if sdist.is_file():
        return _check("llama-server", OK, "not built yet; built from the local source on first use "
                      "(about 15 core-minutes, needs cmake and a C++ compiler).", details)
    return _check("llama-server", WARN, f"not built, and its source ({sdist_name(version)}) is not here: "
                  f"offline it cannot be built. Set ${SDIST_ENV} to a copy, or use the default local engine.", details)


# --- the model against RAM / VRAM, and decode speed ------------------------------------------------------------


def _model_path(spec: str | None) -> Path:
    """The GGUF ``serve --model spec`` would load, without assembling the demo model or creating folders."""
    spec = spec or os.environ.get(MODEL_ENV, DEMO_ALIAS)
    if spec == DEMO_ALIAS:
        path = cache_dir(create=False) / DEMO_FILENAME
        if not (path.is_file() and path.stat().st_size == DEMO_SIZE):
            raise _Skipped("the demo model is not assembled yet: the first `jmedllm ask --model demo` (or the "
                           "installer) assembles it into the cache folder.")
        return path
    return check_gguf_file(find_model_file(spec))


def _positive(values: dict[str, Scalar], key: str, default: int | None = None) -> int:
    value = values.get(key, default)
    if type(value) is not int or value <= 0:
        raise _Skipped(f"the model's metadata has no usable {key}, so its KV cache cannot be estimated.")
    return value


def kv_cache_bytes(values: dict[str, Scalar], n_ctx: int) -> int:
    """The f16 KV cache for ``n_ctx`` tokens: layers x tokens x KV heads x (key + value length) x 2 bytes."""
    arch = str(values.get("general.architecture", ""))
    n_layer = _positive(values, f"{arch}.block_count")
    n_embd = _positive(values, f"{arch}.embedding_length")
    n_head = _positive(values, f"{arch}.attention.head_count")
    n_head_kv = _positive(values, f"{arch}.attention.head_count_kv", n_head)  # a per-layer array: counted as n_head
    key_length = _positive(values, f"{arch}.attention.key_length", n_embd // n_head)
    value_length = _positive(values, f"{arch}.attention.value_length", n_embd // n_head)
    return n_layer * n_ctx * n_head_kv * (key_length + value_length) * F16_BYTES


def meminfo() -> dict[str, int]:
    """MemTotal and MemAvailable from /proc/meminfo, in bytes (empty where there is none)."""
    found: dict[str, int] = {}
    try:
        lines = Path("/proc/meminfo").read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return found
    for line in lines:
        key, _, value = line.partition(":")
        number = value.split()[:1]
        if key in ("MemTotal", "MemAvailable") and number and number[0].isdigit():
            found[key] = int(number[0]) * 1024
    return found


def check_memory(options: DoctorOptions, gpus: list[dict[str, Any]], offload: bool) -> Check:
    ram = meminfo()
    try:
        path = _model_path(options.model)
    except _Skipped as exc:
        return _check("memory", WARN, f"{exc} RAM: {_gb(ram.get('MemAvailable', 0))} available.",
                      {"ram_total_bytes": ram.get("MemTotal"), "ram_available_bytes": ram.get("MemAvailable")})
    try:
        metadata = read_gguf_metadata(path)
    except GGUFFormatError as exc:
        return _check("memory", FAIL, f"{path.name} is not a readable GGUF file: {exc}.", {"model": str(path)})
    values = metadata.values
    weights = path.stat().st_size
    arch = str(values.get("general.architecture", ""))
    trained = values.get(f"{arch}.context_length")
    quantization = quantization_name(metadata)
    note = ""
    try:
        kv_cache = kv_cache_bytes(values, options.n_ctx)
    except _Skipped as exc:
        kv_cache, note = 0, f" Not counted: {exc}"
    needed = weights + kv_cache + RUNTIME_OVERHEAD_BYTES
    details: dict[str, Any] = {
        "model": str(path), "quantization": quantization, "n_ctx": options.n_ctx, "trained_context": trained,
        "weights_bytes": weights, "kv_cache_bytes": kv_cache, "overhead_bytes": RUNTIME_OVERHEAD_BYTES,
        "needed_bytes": needed, "ram_total_bytes": ram.get("MemTotal"), "ram_available_bytes": ram.get("MemAvailable"),
    }
    plan = (f"this {_gb(weights)} {quantization} with a {options.n_ctx:,} context needs ~{_gb(needed)} "
            f"({_gb(kv_cache)} of it KV cache)")
    if type(trained) is int and 0 < trained < options.n_ctx:
        note += f" The model was trained for {trained:,} tokens: answers past that degrade."
    if offload and gpus:
        free = max(gpu["memory_free"] for gpu in gpus)
        details["vram_free_bytes"] = free
        if needed <= free:
            return _check("memory", WARN if note else OK, f"{plan}: fits in {_gb(free)} free GPU memory "
                          f"(VRAM).{note}", details)
        if "MemAvailable" in ram and needed <= free + ram["MemAvailable"]:
            return _check("memory", WARN, f"{plan}: more than the {_gb(free)} free GPU memory (VRAM); "
                          f"use --gpu-layers N to keep some layers on the CPU.{note}", details)
    if not ram:
        return _check("memory", WARN, f"{plan}; this system's RAM could not be read.{note}", details)
    available, total = ram["MemAvailable"], ram["MemTotal"]
    if needed > total:
        return _check("memory", FAIL, f"{plan}: does not fit in {_gb(total)} of RAM (メモリ不足). Use a "
                      "smaller model, a smaller quantization or a shorter --ctx.", details)
    if needed > available:
        return _check("memory", WARN, f"{plan}: more than the {_gb(available)} available now; close other "
                      f"programs first.{note}", details)
    return _check("memory", WARN if note else OK, f"{plan}: fits in {_gb(available)} available RAM.{note}",
                  details)


def _buffer(size: int) -> memoryview:
    """``size`` bytes of fresh memory, its pages mapped in at once where the system allows."""
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
    return memoryview(mmap.mmap(-1, size, flags=flags))


def memory_bandwidth(size: int = BANDWIDTH_BYTES, repeats: int = BANDWIDTH_REPEATS) -> float:
    """Bytes per second read plus written when every usable core copies its share of a large buffer; the best
    of ``repeats`` after one warm-up."""
    import numpy as np

    source = np.frombuffer(_buffer(size), dtype=np.uint8)
    target = np.frombuffer(_buffer(size), dtype=np.uint8)
    source.fill(1)
    n_threads = default_threads()
    share = size // n_threads

    def copy_once() -> float:
        threads = [threading.Thread(target=np.copyto, args=(target[i * share:(i + 1) * share],
                                                             source[i * share:(i + 1) * share]))
                   for i in range(n_threads)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - start

    copy_once()
    best = min(copy_once() for _ in range(repeats))
    return 2 * share * n_threads / best


def check_speed(options: DoctorOptions, gpus: list[dict[str, Any]], offload: bool) -> Check:
    bandwidth = memory_bandwidth()
    details: dict[str, Any] = {"memory_bandwidth_bytes_per_s": round(bandwidth), "threads": default_threads()}
    summary = f"memory bandwidth (メモリ帯域) {bandwidth / 1e9:,.1f} GB/s measured"
    try:
        path = _model_path(options.model)
        read_gguf_metadata(path)  # a damaged file gives no estimate
        weights = path.stat().st_size
    except (_Skipped, UserError, GGUFFormatError):  # the memory check says why
        return _check("speed", OK, summary + ".", details)
    details["weights_bytes"] = weights
    details["tokens_per_second_upper_bound"] = round(bandwidth / weights, 1)
    ceiling = (f"expect at most ~{bandwidth / weights:,.1f} tokens/s on the CPU for this {_gb(weights)} model (each "
               "token reads all its weights once: a ceiling, not a promise)")
    if offload and gpus:
        return _check("speed", OK, f"{summary}: {ceiling}. With --gpu-layers auto its layers run on the GPU "
                      f"({gpus[0]['name']}), whose memory is several times faster: expect more there.", details)
    return _check("speed", OK, f"{summary}: {ceiling}.", details)


# --- disk, data folder, database, question sets ----------------------------------------------------------------


def _existing(path: Path) -> Path:
    """``path`` or its nearest folder that exists (where a new folder would be created)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk() -> Check:
    data, models = data_dir(create=False), models_dir(create=False)
    data_free = shutil.disk_usage(_existing(data)).free
    models_free = shutil.disk_usage(_existing(models)).free
    details = {"data_dir": str(data), "data_free_bytes": data_free, "models_dir": str(models),
               "models_free_bytes": models_free}
    summary = f"{_gb(data_free)} free for the data folder, {_gb(models_free)} for the models folder (空き容量)"
    if models.exists() and not models.is_dir():
        return _check("disk", WARN, f"{summary}; but the models folder {models} is not a folder: model import and "
                      "the Model tab cannot use it. Move it away (or set $JMEDLLM_MODELS_DIR to a folder).", details)
    if data_free < FULL_DISK_BYTES:
        return _check("disk", FAIL, f"{summary}: the database cannot be written. Free some space.",
                      details)
    if data_free < LOW_DATA_DISK_BYTES or models_free < MODEL_DISK_BYTES:
        return _check("disk", WARN, f"{summary}: low (a 7B Q4_K_M model takes ~4.7 GB).", details)
    return _check("disk", OK, summary + ".", details)


def _schema(conn: sqlite3.Connection) -> tuple[list[str], list[str], list[str]]:
    """(applied, pending, unknown) migration names; unknown ones were applied by a newer release."""
    from app.migrations import MIGRATIONS, MIGRATIONS_TABLE

    known = MIGRATIONS.names
    has_table = conn.execute("select 1 from sqlite_master where type = 'table' and name = ?",
                             (MIGRATIONS_TABLE,)).fetchone()
    applied = ([row[0] for row in conn.execute(f"select name from {MIGRATIONS_TABLE} order by name")]
               if has_table else [])
    return applied, [name for name in known if name not in applied], [name for name in applied if name not in known]


def check_database(options: DoctorOptions) -> Check:
    data = data_dir(create=False)
    path = options.db_path or data / DEFAULT_DB_NAME
    details: dict[str, Any] = {"data_dir": str(data), "data_dir_exists": data.is_dir(), "database": str(path),
                               "exists": path.is_file()}
    if data.is_dir() and not os.access(data, os.W_OK | os.X_OK):
        return _check("database", FAIL, f"the data folder {data} is not writable by this user.", details)
    if path.exists() and not path.is_file():
        return _check("database", FAIL, f"{path} is not a regular file (a folder, a pipe ...), so the app cannot "
                      "keep its database there: move it away, or use another --db.", details)
    if not path.is_file():
        return _check("database", OK, f"no database at {path} yet: it is created when the first question "
                      "or benchmark run is stored.", details)
    try:
        path.open("rb").close()
    except OSError as exc:
        details["error"] = str(exc)
        return _check("database", FAIL, f"{path} cannot be opened by this user ({exc.strerror}): check its owner "
                      "and permissions (run the app as the user who owns it). The file itself may be intact: "
                      "do not replace it.", details)
    details["size_bytes"] = path.stat().st_size + sum(
        p.stat().st_size for p in (path.with_name(path.name + "-wal"),) if p.is_file())
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            applied, pending, unknown = _schema(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        details["error"] = str(exc)
        return _check("database", FAIL, f"{path} cannot be read as a database ({exc}): damaged, or another "
                      "kind of file. Restore it from a backup, or move it away to start a new one.", details)
    details.update(integrity=integrity[:20], applied=applied, pending=pending, unknown=unknown)
    size = _size(details["size_bytes"])
    if integrity != ["ok"]:
        return _check("database", FAIL, f"{path} ({size}) fails SQLite's integrity check (破損): "
                      f"{integrity[0]}. Restore it from a backup.", details)
    if unknown:
        return _check("database", FAIL, f"{path} was written by a newer release (schema {', '.join(unknown)}): "
                      "upgrade the app, or use another --db.", details)
    if pending:
        return _check("database", WARN, f"{path} ({size}) is intact; its schema will upgrade on the next start "
                      f"({', '.join(pending)}).", details)
    return _check("database", OK, f"{path} ({size}) is intact, schema up to date ({len(applied)} migrations).",
                  details)


def check_question_sets() -> Check:
    from app.bench import library
    from app.bench.data import DATA_ENV, configured_igakuqa_dir, resolve_data_dir
    from app.bench.sources import DEFAULT_SET

    data = data_dir(create=False)
    if not data.is_dir():
        return _check("igakuqa", WARN, "no data folder yet, so no imported IgakuQA: benchmarks need it (jmedllm bench "
                      "data add IgakuQA-main.zip); questions and chat do not.", {"igakuqa": None, "imported_sets": []})
    has_library = (data / "benchmarks").is_dir()  # library.entries() would create it
    sets = [entry.name for entry in library.entries()] if has_library else []
    details: dict[str, Any] = {"imported_sets": sets}
    configured = os.environ.get(DATA_ENV) or configured_igakuqa_dir()
    entry = library.find(DEFAULT_SET) if has_library and not configured else None
    try:
        where = f"imported ({entry.questions:,} questions)" if entry else str(resolve_data_dir())
    except DataError as exc:
        details["igakuqa"] = None
        return _check("igakuqa", WARN, "IgakuQA not found; benchmarks need it, questions and chat do not. "
                      f"{' '.join(str(exc).split())}", details)
    details["igakuqa"] = where
    return _check("igakuqa", OK, f"IgakuQA: {where}; {len(sets)} imported question set(s).", details)


# --- network and port --------------------------------------------------------------------------------------------


def check_network() -> Check:
    from app.ui.server import OFFLINE_ENV

    proxies = {name: os.environ[name] for variable in PROXY_VARIABLES
               for name in (variable, variable.lower()) if name in os.environ}
    overridden = {name: os.environ[name] for name, value in OFFLINE_ENV.items()
                  if name in os.environ and os.environ[name] != value}
    details = {"proxy_variables": proxies, "offline_settings": OFFLINE_ENV, "overridden": overridden}
    summary = ("the app makes no outbound connections (Gradio analytics and Hugging Face calls are turned off by "
               f"{', '.join(OFFLINE_ENV)})")
    if overridden:
        return _check("network", WARN, f"{summary}, but this environment sets "
                      f"{', '.join(f'{k}={v}' for k, v in overridden.items())}, which serve keeps: unset it.", details)
    unused = f"; proxy settings present but unused: {', '.join(proxies)}" if proxies else ""
    return _check("network", OK, summary + unused + ".", details)


def check_port(options: DoctorOptions) -> Check:
    address = f"{options.host}:{options.port}"
    details: dict[str, Any] = {"host": options.host, "port": options.port}
    problem = listen_problem(options.host, options.port)
    if problem is None:
        beyond = "" if is_loopback(options.host) else (
            " Beyond loopback, serve starts only with a login and API keys (--auth-file, --api-key-file)"
            + (" and the names clients use for this machine (--allowed-host NAME)." if is_unspecified(options.host)
               else "."))
        return _check("port", OK, f"{address} is free for jmedllm serve.{beyond}", details)
    details["error"] = problem.message
    return _check("port", WARN if problem.why == "in_use" else FAIL, problem.message, details)


# --- all of it ---------------------------------------------------------------------------------------------------


def run_doctor(options: DoctorOptions = DoctorOptions()) -> Report:
    """Every check that ``options.skip`` leaves in, in the order of :data:`TITLES`; a check that cannot
    apply is a warning, one that meets a user error or an OS error a failure, never an exception."""
    gpus = nvidia_gpus()
    offload = bool(llama_cpp.llama_supports_gpu_offload())
    steps: dict[str, Callable[[], Check]] = {
        "python": check_python,
        "cpu": check_cpu,
        "llama.cpp": lambda: check_llama_cpp(gpus),
        "llama-server": check_llama_server,
        "memory": lambda: check_memory(options, gpus, offload),
        "speed": lambda: check_speed(options, gpus, offload),
        "disk": check_disk,
        "database": lambda: check_database(options),
        "igakuqa": check_question_sets,
        "network": check_network,
        "port": lambda: check_port(options),
    }
    checks = []
    for name in TITLES:
        if name in options.skip:
            continue
        try:
            checks.append(steps[name]())
        except _Skipped as exc:
            checks.append(_check(name, WARN, str(exc)))
        except (UserError, OSError) as exc:
            checks.append(_check(name, FAIL, str(exc)))
    return Report(tuple(checks))
