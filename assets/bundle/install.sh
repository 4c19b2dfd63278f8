#!/usr/bin/env bash
# Install JMedLLM Desk from this offline bundle without any network: the bundle's checksums and this
# machine's platform are checked first (nothing is installed when they fail), then a virtualenv gets
# the bundle's wheels only, llama-server goes where the app looks for it, and the demo model is assembled.
# Re-running (this or a newer bundle) upgrades in place; the database and models live in the user data
# folder, not here, and are kept.
#   ./install.sh [--prefix DIR]     (default: /opt/jmedllm as root, else ~/jmedllm; PYTHON=... picks Python)
set -euo pipefail
bundle="$(cd "$(dirname "$0")" && pwd)"
caller="$PWD"  # a relative --prefix is relative to this folder, not to the bundle
cd "$bundle"

die() {
    echo "install.sh: $*" >&2
    exit 1
}

first_of() {  # the first 5 of the lines on stdin, space-separated, then how many more there are
    awk 'NR <= 5 { printf "%s%s", (NR > 1 ? " " : ""), $0 } END { if (NR > 5) printf " and %d more", NR - 5 }'
}

prefix=""
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; prefix="$2"; shift ;;
        --prefix=*) prefix="${1#--prefix=}" ;;
        -h|--help) sed -n '2,8p' "$0" | cut -c3-; exit 0 ;;
        *) die "unknown argument: $1 (usage: ./install.sh [--prefix DIR])" ;;
    esac
    shift
done
if [ -z "$prefix" ]; then
    if [ "$(id -u)" = 0 ]; then prefix=/opt/jmedllm; else prefix="$HOME/jmedllm"; fi
fi
case "$prefix" in /*) ;; *) prefix="$caller/$prefix" ;; esac
started=$(date +%s)

# Never the network: no package index, no pip configuration files, no proxies.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY PIP_INDEX_URL PIP_EXTRA_INDEX_URL \
    PIP_FIND_LINKS PIP_CONSTRAINT PIP_REQUIREMENT PIP_TRUSTED_HOST
export PIP_NO_INDEX=1 PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

echo "[1/5] Checking every file of the bundle against SHA256SUMS ..."
command -v sha256sum >/dev/null || die "sha256sum (coreutils) is needed to check the bundle."
[ -f SHA256SUMS ] && [ -f BUNDLE.json ] || die "SHA256SUMS or BUNDLE.json is missing in $bundle: the bundle is \
incomplete. Nothing was installed; copy the whole tar again."
if ! result=$(LC_ALL=C sha256sum -c SHA256SUMS 2>&1); then
    bad=$(printf '%s\n' "$result" | grep -v ': OK$' | grep -v '^sha256sum: WARNING' || true)
    printf '%s\n' "$bad" | head -n 10 >&2 || true
    die "the bundle is damaged: $(printf '%s\n' "$bad" | sed -n 's/^\(.*\): FAILED.*$/\1/p' | first_of) \
does not match SHA256SUMS. Nothing was installed. Copy the tar again (compare its sha256sum with the connected \
machine's) and re-run."
fi
unlisted=$(LC_ALL=C comm -23 <(find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort) \
    <(cut -c67- SHA256SUMS | LC_ALL=C sort) | first_of)
[ -z "$unlisted" ] || die "the bundle holds files that SHA256SUMS does not list: $unlisted. Nothing was installed; \
use the tar as it was built."

echo "[2/5] Checking this machine against BUNDLE.json (Python, architecture, C library, CPU) ..."
want=$(sed -n 's/^ *"python": *"\([0-9.]*\)".*/\1/p' BUNDLE.json)
version=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' BUNDLE.json)
python="${PYTHON:-}"
if [ -z "$python" ]; then
    for candidate in "python$want" python3; do
        if command -v "$candidate" >/dev/null; then python="$(command -v "$candidate")"; break; fi
    done
fi
[ -n "$python" ] || die "Python $want was not found. Install the OS's python$want package, or set \
PYTHON=/path/to/python$want. Nothing was installed."
have=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || die "$python does not \
run as Python. Set PYTHON=/path/to/python$want. Nothing was installed."
[ "$have" = "$want" ] || die "the bundle is for Python $want; $python is Python $have. Set \
PYTHON=/path/to/python$want, or build the bundle on a machine with Python $have. Nothing was installed."
"$python" -B bundle_checks.py check BUNDLE.json || die "nothing was installed."

echo "[3/5] Installing JMedLLM Desk $version into $prefix (pip, from the bundle's wheelhouse only) ..."
"$python" -B bundle_checks.py prepare-prefix "$bundle" "$prefix" || die "nothing was installed."
if [ ! -x "$prefix/bin/python" ]; then
    "$python" -m venv --without-pip "$prefix" || die "could not make a virtualenv in $prefix (see above); fix that \
and run install.sh again."
fi
log="$prefix/install.log"
: >"$log"
pip_wheel=$(ls wheelhouse/pip-*.whl)
if ! "$prefix/bin/python" -m pip --version >/dev/null 2>&1; then
    "$prefix/bin/python" "$pip_wheel/pip" install --no-index --find-links wheelhouse pip >>"$log" 2>&1 \
        || { tail -n 20 "$log" >&2; die "could not install pip from $pip_wheel (log: $log)."; }
fi
extras=demo
if grep -q '"with_convert": true' BUNDLE.json; then extras=demo,convert; fi
pip_install=("$prefix/bin/python" -m pip install --no-index --find-links wheelhouse --only-binary :all:)
if ! { "${pip_install[@]}" --upgrade --upgrade-strategy eager "jmedllm[$extras]==$version" pip \
        && "${pip_install[@]}" --no-deps --force-reinstall wheelhouse/jmedllm-"$version"-*.whl; } >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "pip could not install the bundle's wheels (full log: $log)."
fi

echo "[4/5] llama.cpp: llama-cpp-python and llama-server ..."
"$prefix/bin/python" -c 'import llama_cpp' 2>>"$log" || { tail -n 5 "$log" >&2; die "llama-cpp-python does not \
load here. A missing libgomp.so.1 needs the OS package libgomp1; a CUDA bundle needs the CUDA runtime libraries \
of the toolkit it was built with (see BUNDLE.json)."; }
server=$("$prefix/bin/python" -B bundle_checks.py place-server "$bundle" "$prefix") || die "could not place llama-server."
"$server" --version >>"$log" 2>&1 || { tail -n 5 "$log" >&2; die "the bundle's llama-server does not run here ($server)."; }

echo "[5/5] Assembling and checking the demo model ..."
"$prefix/bin/jmedllm" model info demo >>"$log" || die "the demo model could not be assembled (see above)."
cp BUNDLE.json "$prefix/BUNDLE.json"
data=$("$prefix/bin/python" -c 'from app.paths import data_dir; print(data_dir())')
# the prefix as the commands below can be copied into a shell: single-quoted when it holds a space or the like
shown=$prefix
case "$prefix" in *[!A-Za-z0-9_./-]*) shown="'${prefix//\'/\'\\\'\'}'" ;; esac

cat <<EOF

Installed JMedLLM Desk $version in $prefix in $(( $(date +%s) - started )) s (log: $log).
  Start the UI:  $shown/bin/jmedllm serve --model demo      then open http://127.0.0.1:7860
  Ask once:      $shown/bin/jmedllm ask --model demo "..."
  Your database and models live in $data and are kept when a newer bundle's install.sh upgrades this one.
  llama-server:  $server
                 (another account, e.g. a service, can use it with
                  JMEDLLM_LLAMA_SERVER=$shown/share/jmedllm/llama-server/llama-server)
EOF
