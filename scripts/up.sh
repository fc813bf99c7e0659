#!/usr/bin/env bash
# Quick start: deploys the `dev` stack to the local Docker engine with state kept in this
# directory (no Pulumi Cloud account). Re-run to apply changes.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=0
if ! command -v pulumi >/dev/null 2>&1; then
  echo "error: the Pulumi CLI (pulumi) is not on PATH." >&2
  echo "       Install it: curl -fsSL https://get.pulumi.com | sh   (or see https://www.pulumi.com/docs/install/)" >&2
  missing=1
fi
if ! command -v docker >/dev/null 2>&1; then
  echo "error: the Docker CLI (docker) is not on PATH." >&2
  echo "       Install Docker Engine: https://docs.docker.com/engine/install/" >&2
  missing=1
elif ! docker info >/dev/null 2>&1; then
  echo "error: no Docker engine answers (docker info failed)." >&2
  echo "       Start it (sudo systemctl start docker), or check DOCKER_HOST and that your user may use the socket." >&2
  missing=1
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "error: npm is not on PATH; install Node.js 20.19 or later: https://nodejs.org/" >&2
  missing=1
fi
[ "$missing" -eq 0 ] || exit 1

# State and the passphrase that encrypts its secrets stay in this directory (both git-ignored).
mkdir -p .pulumi-state
export PULUMI_BACKEND_URL="file://$PWD/.pulumi-state"
if [ ! -s .pulumi-passphrase ]; then
  (umask 077 && openssl rand -hex 32 > .pulumi-passphrase)
  echo "Created .pulumi-passphrase: keep it; without it the stack's secrets cannot be read."
fi
export PULUMI_CONFIG_PASSPHRASE_FILE="$PWD/.pulumi-passphrase"

[ -d node_modules ] || npm ci

pulumi stack select --create dev
pulumi up "$@"

echo
echo "Endpoint:  $(pulumi stack output endpoint)"
echo "Secrets:   pulumi stack output --show-secrets apiKeys"
echo "CA cert:   pulumi stack output caCertPem > ca.pem"
