#!/bin/sh
# Builds the token-accounting nginx module (image/proxy/usage-module/) for the nginx on PATH into
# build/usage-module/ (git-ignored) and prints the .so path; `render --usage-module <path>` or a
# copy at /usr/lib/nginx/modules/ puts it to use. Rebuilds only when the source or nginx changed.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build/usage-module} exec sh "$ROOT/image/proxy/usage-module/build.sh"
