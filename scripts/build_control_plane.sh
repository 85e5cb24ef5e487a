#!/usr/bin/env bash
# Build the test Kubernetes control plane (etcd, kube-apiserver, kube-scheduler,
# kube-controller-manager), kwok (fake nodes) and helm from Go modules into a cache
# outside the repo.
#
#   scripts/build_control_plane.sh           build whatever the cache lacks, else nothing
#   scripts/build_control_plane.sh --print   print the folder holding the binaries and exit
#
# None of these ship as Debian packages new enough (Debian's etcd is 3.4, too old for
# Kubernetes >= 1.31), and no release download is reachable, so each is compiled through the
# Go module proxy. `go install k8s.io/kubernetes/cmd/...@v1.X.Y` is refused (its go.mod
# replaces every staging module with a local path), so Kubernetes and etcd are built inside a
# throw-away wrapper module that requires the tag and pins each staging module k8s.io/<m> to
# v0.X.Y, the list read from that tag's own go.mod (never hand-written: it changes every minor
# release). kwok and helm have no replace directives: plain `go install`.
#
# Each component lands in its own folder, keyed by its version and Go's:
#   ${SPACEPORT_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spaceport}/<component>-<version>-<go>/bin
# and the binaries are linked into .../control-plane/bin, the folder tests/kube read.
# Warm: a second. Cold on 2 cores: 8.5 min measured here (etcd 1, kwok 2.5, helm 1, the three
# Kubernetes programs 4 of compiling); each step's time is logged.
set -euo pipefail

KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"

CACHE_ROOT="${SPACEPORT_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spaceport}"
LINKS="$CACHE_ROOT/control-plane/bin"

step() { echo "-----> $*"; }
detail() { echo "       $*"; }
fail() {
    echo " !     $*" >&2
    exit 1
}

if [ "${1:-}" = "--print" ]; then
    echo "$LINKS"
    exit 0
fi

command -v go >/dev/null 2>&1 || fail "go not found: the control plane is built from Go modules (Go 1.26 or newer)"
GO_VERSION="$(go env GOVERSION)"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath
mkdir -p "$CACHE_ROOT" "$LINKS"

# component_dir NAME VERSION -> the cache folder for that build
component_dir() { echo "$CACHE_ROOT/$1-$2-$GO_VERSION"; }

# built DIR BINARY... -> true when every binary is there and runs
built() {
    local dir="$1"
    shift
    for b in "$@"; do
        [ -x "$dir/bin/$b" ] || return 1
    done
    return 0
}

# publish DIR BINARY... -> link the binaries into the shared folder
publish() {
    local dir="$1"
    shift
    for b in "$@"; do
        ln -sfn "$dir/bin/$b" "$LINKS/$b"
    done
}

# timed LABEL COMMAND... -> run it, then log how long it took
timed() {
    local label="$1" start end
    shift
    start=$(date +%s)
    "$@"
    end=$(date +%s)
    detail "$label: $((end - start)) s"
}

# wrapper_module DIR MODULE -> a fresh main module in DIR named MODULE
wrapper_module() {
    mkdir -p "$1"
    (cd "$1" && go mod init "$2" >/dev/null 2>&1)
}

build_kubernetes() {
    local dir work staging minor gomod ldflags
    dir="$(component_dir kubernetes "$KUBERNETES_VERSION")"
    if built "$dir" kube-apiserver kube-controller-manager kube-scheduler; then
        detail "kubernetes $KUBERNETES_VERSION: built ($dir/bin)"
        publish "$dir" kube-apiserver kube-controller-manager kube-scheduler
        return
    fi
    step "Building kube-apiserver, kube-controller-manager, kube-scheduler $KUBERNETES_VERSION (cold: ~4 min on 2 cores)"
    staging="v0.${KUBERNETES_VERSION#v1.}"
    minor="$(echo "$KUBERNETES_VERSION" | cut -d. -f2)"
    work="$(mktemp -d "$CACHE_ROOT/.kubernetes-build.XXXXXX")"
    wrapper_module "$work" spaceport.local/kubernetes-binaries
    gomod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    [ -f "$gomod" ] || fail "go mod download gave no go.mod for k8s.io/kubernetes@$KUBERNETES_VERSION"
    # Every staging module k8s.io/<m> is required at v0.0.0 and replaced by a local path
    # upstream; the published v0.X.Y of each is the same code.
    local replaced=0
    for m in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod" | sort -u); do
        (cd "$work" && go mod edit -replace="$m=$m@$staging")
        replaced=$((replaced + 1))
    done
    detail "pinned $replaced staging modules to $staging"
    (cd "$work" && go mod edit -require="k8s.io/kubernetes@$KUBERNETES_VERSION")
    timed "module download" bash -c "cd '$work' && go get k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION \
            k8s.io/kubernetes/cmd/kube-controller-manager@$KUBERNETES_VERSION \
            k8s.io/kubernetes/cmd/kube-scheduler@$KUBERNETES_VERSION"
    local v=k8s.io/component-base/version c=k8s.io/client-go/pkg/version
    ldflags="-s -w -X $v.gitVersion=$KUBERNETES_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor \
        -X $v.gitTreeState=clean -X $c.gitVersion=$KUBERNETES_VERSION -X $c.gitMajor=1 -X $c.gitMinor=$minor"
    timed "compile" bash -c "cd '$work' && go build -ldflags '$ldflags' -o '$work/bin/' \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler"
    "$work/bin/kube-apiserver" --version >/dev/null || fail "the built kube-apiserver does not run"
    rm -rf "$dir"
    mkdir -p "$dir"
    mv "$work/bin" "$dir/bin"
    rm -rf "$work"
    publish "$dir" kube-apiserver kube-controller-manager kube-scheduler
}

build_etcd() {
    local dir work
    dir="$(component_dir etcd "$ETCD_VERSION")"
    if built "$dir" etcd; then
        detail "etcd $ETCD_VERSION: built ($dir/bin)"
        publish "$dir" etcd
        return
    fi
    step "Building etcd $ETCD_VERSION"
    work="$(mktemp -d "$CACHE_ROOT/.etcd-build.XXXXXX")"
    # etcd's server go.mod replaces its sibling modules with ../api etc, so `go install` is
    # refused; in a wrapper those replaces are ignored and its real requirements are used.
    wrapper_module "$work" spaceport.local/etcd-binary
    timed "module download" bash -c "cd '$work' && go get go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    timed "compile" bash -c "cd '$work' && go build -ldflags '-s -w' -o '$work/bin/etcd' go.etcd.io/etcd/server/v3"
    "$work/bin/etcd" --version >/dev/null || fail "the built etcd does not run"
    rm -rf "$dir"
    mkdir -p "$dir"
    mv "$work/bin" "$dir/bin"
    rm -rf "$work"
    publish "$dir" etcd
}

# go_install NAME VERSION PACKAGE BINARY
go_install() {
    local name="$1" version="$2" package="$3" binary="$4" dir
    dir="$(component_dir "$name" "$version")"
    if built "$dir" "$binary"; then
        detail "$name $version: built ($dir/bin)"
        publish "$dir" "$binary"
        return
    fi
    step "Building $name $version"
    mkdir -p "$dir/bin.partial"
    timed "go install" env GOBIN="$dir/bin.partial" go install -ldflags "-s -w" "$package@$version"
    rm -rf "$dir/bin"
    mv "$dir/bin.partial" "$dir/bin"
    publish "$dir" "$binary"
}

# kwok plays each fake node's kubelet through "stages" (node Ready with leases, pods Running
# and Ready once bound, finished when deleted); plain kwok has none built in, so its own
# stage files are kept beside the binary (tests/kube/control_plane.py loads them).
kwok_stages() {
    local dir src
    dir="$(component_dir kwok "$KWOK_VERSION")"
    [ -f "$dir/stages/pod/fast/pod-ready.yaml" ] && return
    src="$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
    [ -d "$src/kustomize/stage" ] || fail "go mod download gave no kustomize/stage for kwok $KWOK_VERSION"
    rm -rf "$dir/stages"
    cp -r "$src/kustomize/stage" "$dir/stages"
    chmod -R u+w "$dir/stages"
    detail "kwok stages: $dir/stages"
}

start=$(date +%s)
step "Checking the test control plane (Kubernetes $KUBERNETES_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION, helm $HELM_VERSION, $GO_VERSION)"
build_etcd
go_install kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok kwok
kwok_stages
go_install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm helm
build_kubernetes
detail "control plane ready in $LINKS ($(($(date +%s) - start)) s)"
