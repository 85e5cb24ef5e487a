#!/usr/bin/env bash
# Build BuildKit (buildkitd and buildctl) from its Go module into a cache outside the repo.
#
#   scripts/build_buildkit.sh            build if the cache lacks this version, else nothing
#   scripts/build_buildkit.sh --print    print the folder holding the binaries and exit
#
# docker Spaces build with BuildKit (docs/builder.md#buildkit). Its release binaries are not
# on a package registry, and `go install .../cmd/buildkitd@vX` is refused (BuildKit's go.mod
# has exclude directives), so the module is downloaded through the Go module proxy and built
# inside a copy of it. The result lands in
#   ${SPACEPORT_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spaceport}/buildkit-<version>/bin
# which is where Spaceport looks unless SPACEPORT_BUILDKIT_DIR says otherwise. Cold: a few
# minutes (mostly compiling); warm: instant.
set -euo pipefail

# Keep in step with builder/buildkit_build.py BUILDKIT_VERSION (a unit test checks).
VERSION="${BUILDKIT_VERSION:-v0.34.2}"
CACHE_ROOT="${SPACEPORT_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spaceport}"
DEST="$CACHE_ROOT/buildkit-$VERSION"

step() { echo "-----> $*"; }
detail() { echo "       $*"; }
fail() {
    echo " !     $*" >&2
    exit 1
}

if [ "${1:-}" = "--print" ]; then
    echo "$DEST/bin"
    exit 0
fi

step "Checking BuildKit $VERSION"
if [ -x "$DEST/bin/buildkitd" ] && [ -x "$DEST/bin/buildctl" ] &&
    "$DEST/bin/buildctl" --version >/dev/null 2>&1; then
    detail "built: $DEST/bin"
    exit 0
fi

command -v go >/dev/null 2>&1 || fail "go not found: BuildKit is built from its Go module (Go 1.24 or newer)"
detail "downloading github.com/moby/buildkit@$VERSION through $(go env GOPROXY)"
SRC="$(go mod download -json "github.com/moby/buildkit@$VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
[ -n "$SRC" ] && [ -d "$SRC" ] || fail "go mod download did not give a source folder for buildkit $VERSION"

mkdir -p "$CACHE_ROOT"
WORK="$(mktemp -d "$CACHE_ROOT/.buildkit-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
# The module cache is read-only: build in a copy (go build writes nothing into it, but a
# module's own go.mod is only honoured, excludes included, as the main module).
cp -r "$SRC" "$WORK/src"
chmod -R u+w "$WORK/src"
detail "compiling buildkitd and buildctl (static, CGO_ENABLED=0)"
(cd "$WORK/src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w \
    -X github.com/moby/buildkit/version.Version=$VERSION" \
    -o "$WORK/bin/" ./cmd/buildkitd ./cmd/buildctl)
"$WORK/bin/buildctl" --version >/dev/null || fail "the built buildctl does not run"
rm -rf "$DEST"
mkdir -p "$DEST"
mv "$WORK/bin" "$DEST/bin"
detail "built: $DEST/bin"
