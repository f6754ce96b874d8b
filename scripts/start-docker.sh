#!/usr/bin/env bash
# Makes a Docker daemon available for `make image` and the image tests, idempotently:
# installs docker.io, iptables and debootstrap from Debian's packages (needs root or sudo) and,
# when no daemon answers, starts dockerd in the background with the settings that work in an
# unprivileged CI container: no iptables/NAT/bridge (builds and runs use the host network), and
# the overlay2 storage driver where an overlay mount works (layers are shared: a build step or a
# container start costs seconds), else vfs (every layer and container is a full copy: minutes).
# Exits non-zero with the reason on failure.
set -euo pipefail

as_root=""
if [ "$(id -u)" != "0" ]; then
  sudo -n true 2>/dev/null || { echo "error: docker setup needs root or password-less sudo" >&2; exit 1; }
  as_root="sudo -n"
fi
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  echo "installing docker.io, iptables, debootstrap (Debian packages)"
  $as_root apt-get update -qq >/dev/null
  $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    docker.io iptables debootstrap >/dev/null
fi
if docker info >/dev/null 2>&1; then
  exit 0
fi
driver=vfs
probe=$(mktemp -d)
mkdir -p "$probe/lower" "$probe/upper" "$probe/work" "$probe/merged"
if $as_root mount -t overlay overlay \
  -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" "$probe/merged" 2>/dev/null
then
  $as_root umount "$probe/merged"
  driver=overlay2
fi
$as_root rm -rf "$probe"
log=${DOCKERD_LOG:-/tmp/inferfleet-dockerd.log}
echo "starting dockerd with the $driver storage driver (log: $log)"
$as_root bash -c "nohup dockerd --iptables=false --ip-masq=false --bridge=none \
  --storage-driver=$driver >'$log' 2>&1 &"
for _ in $(seq 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "error: dockerd did not answer within 60 s; its log:" >&2
tail -20 "$log" >&2
exit 1
