#!/bin/sh
# Builds this directory (the token-accounting body filter, issue 16) as a dynamic module for the
# nginx on PATH (or $NGINX): the same version's source, the same configure flags with
# --with-compat, so the module loads into the packaged binary. Prints the .so path. Idempotent:
# nothing is rebuilt while the module's sources and `nginx -V` are unchanged.
#
# BUILD_DIR=<dir> (required): where the .so, logs and the downloaded source go.
# NGINX_SOURCE_TARBALL=<file>: nginx's source (Debian's nginx_<version>.orig.tar.gz is nginx.org's
#   release); without it, downloaded from Debian's mirror, or nginx.org for other versions.
# Needs: a C compiler and make, the PCRE2, OpenSSL and zlib headers (build-essential libpcre2-dev
# libssl-dev zlib1g-dev on Debian). Run by scripts/build-usage-module.sh, the test harness
# (harness/nginx.ts) and the proxy image's build stage (image/proxy/Dockerfile).
set -eu

MODULE_DIR=$(cd "$(dirname "$0")" && pwd)
NGINX=${NGINX:-nginx}
: "${BUILD_DIR:?set BUILD_DIR to the output directory}"
NAME=ngx_http_gateway_usage_filter_module

info=$("$NGINX" -V 2>&1)
version=$(printf '%s\n' "$info" | sed -n 's|^nginx version: [a-z]*/\([0-9.]*\).*|\1|p')
[ -n "$version" ] || { echo "build-usage-module: cannot read the version from '$NGINX -V'" >&2; exit 1; }
args=$(printf '%s\n' "$info" | sed -n 's/^configure arguments: //p')

stamp=$( (printf '%s\n' "$info"; cat "$MODULE_DIR/config" "$MODULE_DIR/$NAME.c") | sha256sum | cut -c1-16)
so=$BUILD_DIR/$NAME.so
if [ -f "$so" ] && [ "$(cat "$BUILD_DIR/stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$so"
  exit 0
fi

mkdir -p "$BUILD_DIR"
tarball=${NGINX_SOURCE_TARBALL:-$BUILD_DIR/nginx-$version.tar.gz}
if [ ! -f "$tarball" ]; then
  curl -fsSL -o "$tarball.part" "http://deb.debian.org/debian/pool/main/n/nginx/nginx_$version.orig.tar.gz" ||
    curl -fsSL -o "$tarball.part" "https://nginx.org/download/nginx-$version.tar.gz"
  mv "$tarball.part" "$tarball"
fi
src=$BUILD_DIR/nginx-$version
rm -rf "$src"
tar -xzf "$tarball" -C "$BUILD_DIR"

# The packaged binary's flags, minus its own dynamic modules (their libraries are not needed to
# build ours) and the paths (irrelevant to a module). --with-compat is required.
eval "set -- $args"
keep=""
for arg in "$@"; do
  case $arg in
    --with-*=dynamic|--add-module=*|--add-dynamic-module=*|--*-path=*|--prefix=*) ;;
    *) keep="$keep '$(printf '%s' "$arg" | sed "s/'/'\\\\''/g")'" ;;
  esac
done
case " $args " in *" --with-compat "*) ;; *) keep="$keep --with-compat" ;; esac

(
  cd "$src"
  eval "./configure $keep --add-dynamic-module=\"\$MODULE_DIR\"" > "$BUILD_DIR/configure.log" 2>&1 ||
    { tail -20 "$BUILD_DIR/configure.log" >&2; exit 1; }
  make -j"$(nproc 2>/dev/null || echo 2)" modules > "$BUILD_DIR/make.log" 2>&1 ||
    { tail -40 "$BUILD_DIR/make.log" >&2; exit 1; }
)
cp "$src/objs/$NAME.so" "$so.part"
mv "$so.part" "$so"
rm -rf "$src"
echo "$stamp" > "$BUILD_DIR/stamp"
echo "$so"
