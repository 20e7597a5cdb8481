#!/bin/sh
# Prints the Debian packages that provide the shared libraries the given binaries load, one a
# line, so that a runtime image installs exactly those (and their dependencies) and nothing of
# the build toolchain. Used by the build stage of every deploy/container/*.Containerfile.
set -eu
[ "$#" -gt 0 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
libs=""
for bin in "$@"; do
  out=$(ldd "$bin")
  if printf '%s\n' "$out" | grep -q 'not found'; then
    echo "$0: $bin has unresolved libraries:" >&2
    printf '%s\n' "$out" | grep 'not found' >&2
    exit 1
  fi
  libs="$libs $(printf '%s\n' "$out" | awk '/=> \// { print $3 }')"
done
pkgs=""
for lib in $libs; do
  # usrmerge: a library may be registered under /lib or /usr/lib; try the path, then its target.
  owner=$(dpkg-query -S "$lib" 2>/dev/null || dpkg-query -S "$(readlink -f "$lib")" 2>/dev/null) || {
    echo "$0: no Debian package owns $lib" >&2
    exit 1
  }
  pkgs="$pkgs ${owner%%:*}"
done
printf '%s\n' $pkgs | sort -u
