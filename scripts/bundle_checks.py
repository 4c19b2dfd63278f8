#!/usr/bin/env python3
"""The offline bundle's manifest: describe the build machine into BUNDLE.json, check a target against it.

``make_bundle.sh`` runs ``platform`` and ``describe`` on the connected machine; the bundle carries this
file, and its ``install.sh`` runs ``check`` with the target's system Python (standard library only,
before anything is installed) and ``place-server`` with the new virtualenv's Python (which imports
the app to learn where it looks for llama-server).

    python3 bundle_checks.py platform
    python3 bundle_checks.py describe BUNDLE.json --version 0.4.0 --llama-cpp-python 0.3.36 [--cuda] ...
    python3 bundle_checks.py check BUNDLE.json
    python3 bundle_checks.py prepare-prefix BUNDLE_DIR PREFIX
    python3 bundle_checks.py place-server BUNDLE_DIR PREFIX
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

FORMAT = 1
# CPU features llama.cpp's kernels are compiled for: -march=native may use any of these the build CPU has.
X86_FEATURES = re.compile(r"^(sse3|ssse3|sse4_1|sse4_2|avx.*|fma|f16c|bmi2|amx.*)$")
ARM_FEATURES = re.compile(r"^(asimd.*|sve.*|i8mm|bf16|fphp|sme.*)$")
# GGML_<NAME>=ON in a non-native build -> the /proc/cpuinfo flag it needs.
GGML_FLAG_FEATURES = {
    "SSE42": "sse4_2", "AVX": "avx", "AVX2": "avx2", "AVX_VNNI": "avx_vnni", "FMA": "fma", "F16C": "f16c",
    "BMI2": "bmi2", "AVX512": "avx512f", "AVX512_VBMI": "avx512vbmi", "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16", "AMX_TILE": "amx_tile", "AMX_INT8": "amx_int8", "AMX_BF16": "amx_bf16",
}
# The oldest NVIDIA driver that runs programs built with each CUDA toolkit major version.
MIN_DRIVER = {11: (450, 80, 2), 12: (525, 60, 13), 13: (580, 65, 6)}
SERVER_DIR = "llama-server"
MARKER = ".jmedllm-bundle"  # in a prefix: an installation of this app (complete or not), safe to install over
# Free space a new installation needs, in multiples of the wheelhouse (0.6.0 measured: 575 MiB of wheels became
# a 934 MiB virtualenv); an upgrade in place needs one wheelhouse.
SPACE_FACTOR = 2


class BundleCheckError(Exception):
    """The bundle does not fit this machine; the message says why and what to do."""


def platform_tag() -> str:
    """``linux-x86_64-cp311``: the OS, architecture and Python a bundle is built for."""
    return f"{sys.platform}-{platform.machine()}-cp{sys.version_info.major}{sys.version_info.minor}"


def cpu_features() -> list[str]:
    """This CPU's SIMD features as /proc/cpuinfo names them (x86 ``flags``, Arm ``Features``)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return []
    found: set[str] = set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        pattern = {"flags": X86_FEATURES, "Features": ARM_FEATURES}.get(name.strip())
        if pattern is not None:
            found.update(feature for feature in value.split() if pattern.match(feature))
    return sorted(found)


def cmake_definitions(cmake_args: str) -> dict[str, str]:
    """``-DNAME[:TYPE]=VALUE`` arguments as {NAME: VALUE upper-cased}, the last one winning."""
    definitions: dict[str, str] = {}
    for token in shlex.split(cmake_args):
        if token.startswith("-D") and "=" in token:
            name, _, value = token[2:].partition("=")
            definitions[name.split(":", 1)[0]] = value.strip().upper()
    return definitions


def required_features(cmake_args: str) -> tuple[bool, list[str]]:
    """Whether llama.cpp is built for this very CPU, and the CPU features a target then needs."""
    definitions = cmake_definitions(cmake_args)
    if definitions.get("GGML_NATIVE", "ON") not in ("OFF", "0", "FALSE", "NO"):
        return True, cpu_features()
    wanted = {feature for name, feature in GGML_FLAG_FEATURES.items()
              if definitions.get(f"GGML_{name}") in ("ON", "1", "TRUE", "YES")}
    return False, sorted(wanted)


def glibc_version() -> str:
    return platform.libc_ver()[1] or "unknown"


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def nvidia_driver() -> str | None:
    """The loaded NVIDIA kernel driver's version, or None when there is none."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text(errors="replace")
    except OSError:
        text = ""
    match = re.search(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", text)
    if match:
        return match[1]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    result = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                            capture_output=True, text=True, check=False)
    lines = result.stdout.split()
    return lines[0] if result.returncode == 0 and lines else None


def describe(args: argparse.Namespace) -> dict[str, object]:
    """BUNDLE.json for a bundle built on this machine with the given options."""
    cmake_args = os.environ.get("CMAKE_ARGS", "")
    native, features = required_features(cmake_args)
    return {
        "format": FORMAT,
        "name": args.name,
        "version": args.version,
        "platform": platform_tag(),
        "os": sys.platform,
        "machine": platform.machine(),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "glibc": glibc_version(),
        "llama_cpp_python": args.llama_cpp_python,
        "cmake_args": cmake_args,
        "cpu_native": native,
        "cpu_features": features,
        "cuda": args.cuda,
        "cuda_toolkit": args.cuda_toolkit if args.cuda else None,
        "cuda_driver": (nvidia_driver() or "none on the build machine") if args.cuda else None,
        "with_convert": args.with_convert,
        "created_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),  # noqa: UP017 (runs on any Python 3)
    }


def check(manifest: dict[str, object]) -> list[str]:
    """Why this machine cannot run the bundle ([] when it can): OS, architecture, Python, C library, CPU, driver."""
    problems: list[str] = []
    rebuild = "Build the bundle on a connected machine like this one (same OS, architecture and Python)."
    if manifest.get("format") != FORMAT:
        return [f"BUNDLE.json has format {manifest.get('format')!r}; this installer reads format {FORMAT}."]
    if manifest["os"] != sys.platform or manifest["machine"] != platform.machine():
        problems.append(f"The bundle is for {manifest['os']}/{manifest['machine']}, this machine is "
                        f"{sys.platform}/{platform.machine()}. {rebuild}")
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if manifest["python"] != here:
        problems.append(f"The bundle is for Python {manifest['python']}, this is Python {here} ({sys.executable}). "
                        f"Run install.sh with PYTHON=/path/to/python{manifest['python']}, or: {rebuild}")
    built_glibc, glibc = str(manifest["glibc"]), glibc_version()
    if built_glibc != "unknown" and (glibc == "unknown" or version_tuple(glibc) < version_tuple(built_glibc)):
        problems.append(f"The bundle was built against glibc {built_glibc}; this machine has {glibc}. "
                        "Build it on a machine with this machine's OS release (or an older one).")
    features = manifest["cpu_features"]
    missing = sorted(set(features) - set(cpu_features())) if isinstance(features, list) else []
    if missing:
        how = ("was compiled for the build machine's own CPU" if manifest["cpu_native"]
               else "was compiled for CPU features")
        problems.append(f"The bundle's llama.cpp {how}, and this CPU lacks {', '.join(missing)}. Build it again "
                        "with: scripts/make_bundle.sh --portable (any CPU with AVX2), or on a machine with "
                        "this machine's CPU.")
    if manifest["cuda"]:
        problems.extend(_driver_problems(str(manifest["cuda_toolkit"])))
    return problems


def _driver_problems(toolkit: str) -> list[str]:
    driver = nvidia_driver()
    need = MIN_DRIVER.get(version_tuple(toolkit)[0]) if version_tuple(toolkit) else None
    wanted = ".".join(str(n) for n in need) if need else "a driver for CUDA " + toolkit
    if driver is None:
        return [f"This is a CUDA bundle (CUDA {toolkit}) and no NVIDIA driver is loaded here. Install the NVIDIA "
                f"driver {wanted} or newer, or use the CPU bundle (make_bundle.sh without --cuda)."]
    if need and version_tuple(driver) < need:
        return [f"This CUDA {toolkit} bundle needs NVIDIA driver {wanted} or newer; this machine has {driver}."]
    return []


def prefix_problems(prefix: Path, wheelhouse_bytes: int) -> list[str]:
    """Why install.sh cannot install into ``prefix`` ([] when it can): not this app's, unwritable, too full."""
    ours = (prefix / MARKER).is_file()
    if prefix.exists() and not ours and (not prefix.is_dir() or any(prefix.iterdir())):
        return [f"{prefix} exists and is not a JMedLLM Desk installation; choose an empty or new folder with --prefix."]
    existing = next(folder for folder in (prefix, *prefix.parents) if folder.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return [f"{prefix} cannot be written: {existing} is not a folder this user can write. Run install.sh as "
                "a user who can (root for /opt/jmedllm), or choose another folder with --prefix."]
    need, free = wheelhouse_bytes * (1 if ours else SPACE_FACTOR), shutil.disk_usage(existing).free
    if free < need:
        return [f"{prefix} needs about {_mib(need)} free and its disk has {_mib(free)}. Free some space there, "
                "or choose a folder on another disk with --prefix."]
    return []


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def prepare_prefix(bundle: Path, prefix: Path) -> None:
    """Check ``prefix`` and mark it as this app's before anything goes in, so an interrupted install can run again.

    A virtualenv there of another Python, or one that does not run (interrupted, or its Python was removed),
    is removed to be made again. Runs with the target's system Python, the one the virtualenv is made with.
    """
    wheels = sum(file.stat().st_size for file in (bundle / "wheelhouse").iterdir())
    problems = prefix_problems(prefix, wheels)
    if problems:
        raise BundleCheckError(" ".join(problems))
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if (prefix / "pyvenv.cfg").exists() and _venv_python(prefix) != here:
        print(f"      {prefix} has a virtualenv that does not run Python {here}: making it again.", file=sys.stderr)
        shutil.rmtree(prefix)
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / MARKER).touch()


def _venv_python(prefix: Path) -> str | None:
    """The major.minor version of the virtualenv's Python, or None when it does not run."""
    try:
        result = subprocess.run([str(prefix / "bin" / "python"), "-c",
                                 "import sys; print('%d.%d' % sys.version_info[:2])"],
                                capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def place_server(bundle: Path, prefix: Path) -> Path:
    """Put the bundle's llama-server build where the installed app looks for it, and its source beside.

    Runs with the new virtualenv's Python. The build goes to ``<cache>/llama-server/<key>/`` (the key
    the app computes in this environment) and to ``PREFIX/share/jmedllm/llama-server/`` for other users
    (``$JMEDLLM_LLAMA_SERVER``); the sdist to the app's sdist cache, so it can rebuild with other options.
    """
    from app.engines.server_build import (
        BINARY_NAME,
        BuildOptions,
        llama_cpp_python_version,
        sdist_name,
        server_root,
    )

    source = bundle / SERVER_DIR
    version = llama_cpp_python_version()
    built = json.loads((source / "build.json").read_text())
    if built["llama_cpp_python"] != version:
        raise BundleCheckError(f"The bundle's llama-server is built from llama-cpp-python {built['llama_cpp_python']}, "
                               f"but {version} is installed; the bundle is inconsistent. Build it again.")
    root = server_root()
    target = root / BuildOptions.from_environment().key(version)
    for destination in (target, prefix / "share" / "jmedllm" / SERVER_DIR):
        _replace_folder(destination, [source / BINARY_NAME, source / "build.json"], executable=BINARY_NAME)
    sdist = source / sdist_name(version)
    cached_sdist = root / "sdist" / sdist.name
    cached_sdist.parent.mkdir(mode=0o700, exist_ok=True)
    shutil.copyfile(sdist, cached_sdist)
    return target / BINARY_NAME


def _replace_folder(destination: Path, files: list[Path], executable: str) -> None:
    """``destination`` holding exactly ``files``, swapped in with a rename so no half folder is left.

    The file named ``executable`` is made executable: a tar re-packed on Windows loses the modes.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))
    try:
        for file in files:
            shutil.copy2(file, work / file.name)
        os.chmod(work / executable, 0o755)
        os.chmod(work, 0o755)
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(work, destination)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("platform", help="print this machine's platform tag")
    describe_cmd = sub.add_parser("describe", help="write BUNDLE.json for a bundle built here")
    describe_cmd.add_argument("manifest", type=Path)
    describe_cmd.add_argument("--name", required=True)
    describe_cmd.add_argument("--version", required=True)
    describe_cmd.add_argument("--llama-cpp-python", required=True)
    describe_cmd.add_argument("--cuda", action="store_true")
    describe_cmd.add_argument("--cuda-toolkit", default=None)
    describe_cmd.add_argument("--with-convert", action="store_true")
    check_cmd = sub.add_parser("check", help="exit 1, saying why, when this machine cannot run the bundle")
    check_cmd.add_argument("manifest", type=Path)
    prepare_cmd = sub.add_parser("prepare-prefix", help="check the install folder and mark it as this app's")
    prepare_cmd.add_argument("bundle", type=Path)
    prepare_cmd.add_argument("prefix", type=Path)
    place_cmd = sub.add_parser("place-server", help="install the bundle's llama-server build for the app")
    place_cmd.add_argument("bundle", type=Path)
    place_cmd.add_argument("prefix", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "platform":
            print(platform_tag())
        elif args.command == "describe":
            args.manifest.write_text(json.dumps(describe(args), indent=2) + "\n")
        elif args.command == "check":
            problems = check(json.loads(args.manifest.read_text()))
            for problem in problems:
                print(f"Cannot install on this machine: {problem}", file=sys.stderr)
            return 1 if problems else 0
        elif args.command == "prepare-prefix":
            prepare_prefix(args.bundle, args.prefix)
        else:
            print(place_server(args.bundle, args.prefix))
    except BundleCheckError as exc:
        print(exc, file=sys.stderr)
        return 1
    except OSError as exc:  # an unwritable or blocked cache or prefix: one line for install.sh to show
        where = f" {exc.filename}" if exc.filename else ""
        print(f"Cannot write{where}: {exc.strerror or exc}.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
