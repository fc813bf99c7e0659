#!/usr/bin/env bash
# npm run image:proxy [-- --context DIR]: builds image/proxy/Dockerfile with the Docker engine that
# DOCKER_HOST (or the docker CLI's default) names, and tags it ollama-gateway-proxy:local.
# The Pulumi program builds the same Dockerfile on its target host; this is for the host bundle
# (`docker run ... -v "$PWD/out/gateway:/gateway" ollama-gateway-proxy:local`) and for the tests.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
context="$repo/image/proxy"
tag="ollama-gateway-proxy:local"
while [ $# -gt 0 ]; do
  case "$1" in
    --context) context="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    *) echo "usage: npm run image:proxy [-- --context DIR] [--tag NAME:TAG]" >&2; exit 2 ;;
  esac
done
if [ ! -f "$context/Dockerfile" ]; then
  echo "image:proxy: no Dockerfile in $context; give --context the folder that holds this package's image/proxy/Dockerfile." >&2
  exit 2
fi
command -v docker >/dev/null 2>&1 || { echo "image:proxy: the docker CLI is missing; install it with: sudo apt-get install -y docker.io" >&2; exit 3; }
if ! docker version >/dev/null 2>&1; then
  echo "image:proxy: no Docker engine answers${DOCKER_HOST:+ at $DOCKER_HOST}. Start one (sudo systemctl start docker, or sudo bash scripts/docker-engine.sh start and export the DOCKER_HOST it prints)." >&2
  exit 3
fi
start=$(date +%s.%N)
docker build -t "$tag" "$context"
end=$(date +%s.%N)
echo "image:proxy: built $tag in $(awk "BEGIN { printf \"%.1f\", $end - $start }") s, $(docker image inspect -f '{{.Size}}' "$tag") bytes"
