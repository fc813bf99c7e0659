#!/usr/bin/env bash
# A Docker engine of the project's own, for the container suite and the image benchmarks:
# its own data root, exec root and socket, stopped by its pid, never a daemon we did not start.
#   scripts/docker-engine.sh start       start it (no-op if ours already runs); prints DOCKER_HOST
#   scripts/docker-engine.sh stop        stop it by the pid in its pid file
#   scripts/docker-engine.sh base-image  make debian:bookworm-slim locally if the engine lacks it
# The directory is $OLLAMA_GATEWAY_DOCKER_DIR (default: .docker-engine in the repository, git-ignored).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="${OLLAMA_GATEWAY_DOCKER_DIR:-$repo/.docker-engine}"
sock="$dir/docker.sock"
pidfile="$dir/docker.pid"
export DOCKER_HOST="unix://$sock"

running() { [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "docker-engine.sh: '$1' is missing. Install it with: sudo apt-get install -y docker.io debootstrap" >&2
  echo "(or skip the container suite with OLLAMA_GATEWAY_SKIP_DOCKER=1)" >&2
  exit 3
}

case "${1:-}" in
  start)
    need dockerd
    [ "$(id -u)" = "0" ] || { echo "docker-engine.sh: dockerd needs root (run with sudo), or point OLLAMA_GATEWAY_DOCKER_HOST at an engine you run." >&2; exit 3; }
    mkdir -p "$dir/data" "$dir/exec"
    if ! running; then
      # Its own address ranges, so they do not collide with another engine's docker0 or networks.
      dockerd --data-root "$dir/data" --exec-root "$dir/exec" -H "unix://$sock" -p "$pidfile" \
        --bip 10.213.0.1/24 --default-address-pool base=10.214.0.0/16,size=24 \
        --log-level warn >"$dir/dockerd.log" 2>&1 &
      for _ in $(seq 1 120); do
        docker version >/dev/null 2>&1 && break
        sleep 0.5
      done
      docker version >/dev/null 2>&1 || { echo "docker-engine.sh: dockerd did not answer in 60 s; see $dir/dockerd.log" >&2; tail -n 20 "$dir/dockerd.log" >&2; exit 1; }
    fi
    echo "DOCKER_HOST=$DOCKER_HOST"
    ;;
  stop)
    if running; then
      pid="$(cat "$pidfile")"
      kill "$pid"
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
    ;;
  base-image)
    need docker
    if docker image inspect debian:bookworm-slim >/dev/null 2>&1; then echo "debian:bookworm-slim is there"; exit 0; fi
    # No image registry is reachable here: build the base from Debian's own mirror, the one apt uses.
    # A user's engine pulls the real debian:bookworm-slim instead; the Dockerfiles are the same.
    need debootstrap
    mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
    mirror="${mirror:-http://deb.debian.org/debian}"
    rootfs="$(mktemp -d)"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$dir/debootstrap.log" 2>&1 ||
      { echo "docker-engine.sh: debootstrap failed; see $dir/debootstrap.log" >&2; exit 1; }
    # Debian's own image lists the security and updates suites too (debootstrap lists only the
    # release): take this host's Debian sources, so images get the same package revisions as it.
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/debian.sources"
      rm -f "$rootfs/etc/apt/sources.list"
    fi
    tar -C "$rootfs" -c . | docker import - debian:bookworm-slim >/dev/null
    rm -rf "$rootfs"
    echo "made debian:bookworm-slim"
    ;;
  *)
    echo "usage: $0 start|stop|base-image" >&2
    exit 2
    ;;
esac
