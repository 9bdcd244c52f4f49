#!/usr/bin/env bash
# Rebuilds this trimmed copy of github.com/prometheus/prometheus, or refreshes
# its patch. See PATCHES.md.
#
#   third_party/prometheus/update.sh patch      write wanwu.patch: upstream (at $version) → this copy
#   third_party/prometheus/update.sh [VERSION]  copy the packages below from upstream VERSION
#                                               (default $version), apply wanwu.patch, tidy go.mod
#
# Needs network access (or a module cache holding that version), patch(1) and diff(1).
set -euo pipefail

version=v0.316.0 # the upstream release this copy is based on; PATCHES.md says the same

# The packages wanwu's build imports (go list -deps ./cmd/wanwu | grep prometheus/prometheus),
# without config and what only config imported.
packages="
model/exemplar model/histogram model/labels model/metadata model/timestamp model/value
promql promql/parser promql/parser/posrange schema storage
tsdb tsdb/chunkenc tsdb/chunks tsdb/encoding tsdb/fileutil tsdb/goversion tsdb/index
tsdb/record tsdb/tombstones tsdb/tsdbutil tsdb/wlog
util/almost util/annotations util/compression util/features util/kahansum util/logging
util/runtime util/stats util/strutil util/zeropool
"
# Test helpers upstream keeps in non-test files; they import testing and testify.
omit="tsdb/testutil.go tsdb/tsdbutil/dir_locker_testutil.go"

here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# pristine VERSION DIR: upstream's files of $packages at VERSION, as this copy holds them.
pristine() {
  local src
  src=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "github.com/prometheus/prometheus@$1" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  mkdir -p "$2"
  cp "$src/LICENSE" "$src/NOTICE" "$2/"
  for p in $packages; do
    mkdir -p "$2/$p"
    for f in "$src/$p"/*.go; do
      case $f in *_test.go) continue ;; esac
      cp "$f" "$2/$p/"
    done
  done
  for f in $omit; do rm -f "$2/$f"; done
  chmod -R u+w "$2"
}

case "${1:-}" in
patch)
  pristine "$version" "$tmp/a"
  mkdir -p "$tmp/b"
  (cd "$here" && tar -cf - LICENSE NOTICE $packages) | tar -xf - -C "$tmp/b"
  # Without the file times in the headers, so that an unchanged patch stays unchanged.
  (cd "$tmp" && diff -ruN a b | sed -E 's/^((---|\+\+\+) [^\t]*)\t.*/\1/' >"$here/wanwu.patch") || true
  echo "wrote $here/wanwu.patch"
  ;;
*)
  new=${1:-$version}
  pristine "$new" "$tmp/new"
  (cd "$tmp/new" && patch -p1 --no-backup-if-mismatch <"$here/wanwu.patch")
  find "$here" -mindepth 1 -maxdepth 1 ! -name PATCHES.md ! -name update.sh ! -name wanwu.patch \
    ! -name go.mod -exec rm -rf {} +
  cp -R "$tmp/new/." "$here/"
  src=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "github.com/prometheus/prometheus@$new" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  cp "$src/go.mod" "$here/go.mod" && chmod u+w "$here/go.mod"
  (cd "$here" && go mod tidy && rm -f go.sum)
  if [ "$new" != "$version" ]; then
    sed -i "s/^version=$version /version=$new /" "$here/update.sh"
    echo "now update PATCHES.md and go.mod's comment to $new, then: go mod tidy && go build ./cmd/wanwu"
  fi
  ;;
esac
