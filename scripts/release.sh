#!/usr/bin/env bash
# Builds the release binaries of wanwu into dist/ (replacing what is there):
# static (CGO_ENABLED=0) linux binaries for amd64, arm64 and riscv64, named
# wanwu-$VERSION-linux-$ARCH, and dist/SHA256SUMS over them.
#
#   scripts/release.sh              # VERSION from 'git describe --tags --always --dirty'
#   VERSION=v1.2.3 scripts/release.sh
#   ARCHS="amd64 arm64" scripts/release.sh
#
# Check a download with: cd dist && sha256sum -c SHA256SUMS
#
# The version and the commit are linked in with -X (see internal/cli/version.go)
# rather than stamped by the go command, which stamps nothing in a git
# worktree or without .git; -buildvcs=false and -trimpath keep the binaries
# reproducible: the same commit, VERSION and Go toolchain give the same bytes.
set -euo pipefail

cd "$(dirname "$0")/.."

pkg=github.com/wanwu-iot/wanwu/internal/cli
archs=${ARCHS:-amd64 arm64 riscv64}

commit=""
if git rev-parse --git-dir >/dev/null 2>&1; then
	commit=$(git rev-parse HEAD)
	VERSION=${VERSION:-$(git describe --tags --always --dirty)}
fi
if [[ -z ${VERSION:-} ]]; then
	echo "release.sh: not in a git checkout: set VERSION" >&2
	exit 2
fi
if [[ ! $VERSION =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]]; then
	echo "release.sh: VERSION $VERSION: use letters, digits and . _ + - (it names the files)" >&2
	exit 2
fi
if [[ $VERSION == *dirty* ]]; then
	echo "release.sh: warning: the working tree has uncommitted changes; the binaries are not those of commit $commit" >&2
fi

if command -v sha256sum >/dev/null; then
	sha256=(sha256sum)
else
	sha256=(shasum -a 256) # macOS
fi

echo "wanwu $VERSION (commit ${commit:-unknown}) with $(go env GOVERSION)"
rm -rf dist
mkdir dist
files=()
for arch in $archs; do
	out=wanwu-$VERSION-linux-$arch
	echo "  building dist/$out"
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X $pkg.Version=$VERSION -X $pkg.Commit=$commit" \
		-o "dist/$out" ./cmd/wanwu
	files+=("$out")
done
(cd dist && "${sha256[@]}" "${files[@]}" >SHA256SUMS)

# The binary for this machine, if there is one, must say what it is.
host=$(go env GOHOSTOS)-$(go env GOHOSTARCH)
if [[ -x dist/wanwu-$VERSION-$host ]]; then
	"dist/wanwu-$VERSION-$host" version | sed 's/^/  /'
fi
ls -l dist
