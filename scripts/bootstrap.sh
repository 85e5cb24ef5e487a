#!/usr/bin/env bash
# Prepare this machine to run Spaceport (Debian 12, as root): system packages, a running
# Docker Engine, *.localhost name resolution and the project's virtual environment.
#
#   scripts/bootstrap.sh          what `spaceport up` needs
#   scripts/bootstrap.sh --test   also what the test suite needs (PostgreSQL, Redis, Chromium, axe-core)
#
# Idempotent, and quick when everything is already in place: apt is only consulted for
# packages that are missing, and pip only runs when pyproject.toml changed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

step() { echo "-----> $*"; }
detail() { echo "       $*"; }
fail() {
    echo " !     $*" >&2
    exit 1
}

WITH_TEST=0
for arg in "$@"; do
    case "$arg" in
        --test) WITH_TEST=1 ;;
        -h | --help)
            sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *) fail "unknown argument: $arg (usage: scripts/bootstrap.sh [--test])" ;;
    esac
done

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    fi
fi
as_root() {
    if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
        fail "this step needs root (or sudo): $*"
    fi
    "${SUDO[@]}" "$@"
}

# --- system packages --------------------------------------------------------------------
PACKAGES=(
    docker.io
    debootstrap
    git
    git-lfs
    python3-venv
    ca-certificates
    curl
    libnss-myhostname
    procps # pgrep, to tell a dockerd that is still starting from none at all
    skopeo # hands the Engine's base images to BuildKit (docker Spaces)
)
if [ "$WITH_TEST" -eq 1 ]; then
    # docker-registry (Distribution 2.8) and htpasswd: the local registry that tests push
    # built images to (tests/local_registry.py starts its own; the packaged service is off).
    PACKAGES+=(postgresql redis-server docker-registry apache2-utils)
    # chromium: the browser the visitor queue's waiting page is tested in
    # (tests/unit/test_waiting_page_browser.py, through the test extras' Playwright, which
    # drives this one: no browser of Playwright's own is downloaded).
    PACKAGES+=(chromium)
    # fonts-noto-color-emoji: a Space's card emoji, drawn in those pages' screenshots (without
    # it Chromium draws an empty box). nodejs (with npm): installs the browser tests' pinned
    # front-end dependencies (tests/browser/package-lock.json: axe-core, the accessibility
    # engine tests/unit/test_pages_accessibility.py runs in every page) from the npm registry.
    PACKAGES+=(fonts-noto-color-emoji nodejs)
    if ! command -v npm >/dev/null 2>&1; then
        # Debian's nodejs comes without npm; a nodejs that bundles it (NodeSource's) conflicts
        # with Debian's npm package, so it is only asked for when there is no npm at all.
        PACKAGES+=(npm)
    fi
fi

step "Checking system packages"
MISSING=()
for pkg in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    if [ "$status" != "install ok installed" ]; then
        MISSING+=("$pkg")
    fi
done
if [ ${#MISSING[@]} -eq 0 ]; then
    detail "all ${#PACKAGES[@]} present"
else
    step "Installing ${MISSING[*]}"
    command -v apt-get >/dev/null 2>&1 || fail "apt-get not found: install ${MISSING[*]} by hand"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${MISSING[@]}"
fi

if [ "$WITH_TEST" -eq 1 ] && [ -d /run/systemd/system ] &&
    systemctl is-enabled --quiet docker-registry.service 2>/dev/null; then
    # The package enables a registry on :5000 for everyone; the tests start their own.
    step "Disabling the packaged docker-registry service"
    as_root systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
fi

# --- Docker Engine ----------------------------------------------------------------------
# /usr/bin/docker is the client that ships with docker.io; /usr/local/bin/docker, when there
# is one, may be a client of another version.
DOCKER=/usr/bin/docker
DOCKERD=/usr/sbin/dockerd
DOCKERD_LOG=/var/log/spaceport-dockerd.log

step "Checking Docker Engine"
if "$DOCKER" info >/dev/null 2>&1; then
    detail "running"
else
    if pgrep -x dockerd >/dev/null 2>&1; then
        detail "dockerd is starting; waiting for it"
    else
        [ "$(id -u)" -eq 0 ] || fail "Docker Engine is not running; start it as root (or run this as root)"
        detail "starting dockerd (log: $DOCKERD_LOG)"
        # No systemd here: run it detached from this shell so it outlives the script.
        setsid nohup "$DOCKERD" >>"$DOCKERD_LOG" 2>&1 </dev/null &
    fi
    for _ in $(seq 60); do
        if "$DOCKER" info >/dev/null 2>&1; then
            break
        fi
        sleep 1
    done
    if ! "$DOCKER" info >/dev/null 2>&1; then
        tail -n 25 "$DOCKERD_LOG" 2>/dev/null | sed 's/^/       /' >&2 || true
        fail "Docker Engine did not answer on /var/run/docker.sock within 60 s (see $DOCKERD_LOG)"
    fi
    detail "running"
fi

# --- BuildKit ---------------------------------------------------------------------------
# docker Spaces build with BuildKit, built from its Go module into a cache outside the repo
# (instant when that version is already there).
"$ROOT/scripts/build_buildkit.sh"

# --- *.localhost name resolution --------------------------------------------------------
# nss-myhostname resolves localhost and every *.localhost name to the loopback address, so
# Spaces served at {owner}-{name}.localhost work without touching /etc/hosts.
NSSWITCH=/etc/nsswitch.conf
step "Checking *.localhost resolution"
if grep -Eq '^hosts:.*[[:space:]]myhostname([[:space:]]|$)' "$NSSWITCH" 2>/dev/null; then
    detail "myhostname already in $NSSWITCH"
elif grep -Eq '^hosts:' "$NSSWITCH" 2>/dev/null; then
    if grep -Eq '^hosts:.*[[:space:]]files([[:space:]]|$)' "$NSSWITCH"; then
        as_root sed -i -E '/^hosts:/s/([[:space:]])files([[:space:]]|$)/\1files myhostname\2/' "$NSSWITCH"
    else
        as_root sed -i -E '/^hosts:/s/$/ myhostname/' "$NSSWITCH"
    fi
    detail "added myhostname to the hosts line of $NSSWITCH"
else
    echo "hosts:          files myhostname dns" | as_root tee -a "$NSSWITCH" >/dev/null
    detail "added a hosts line to $NSSWITCH"
fi

# --- Python virtual environment ---------------------------------------------------------
VENV="$ROOT/.venv"
STAMP="$VENV/.installed-stamp"
step "Checking virtual environment"
if ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    detail "creating $VENV"
    python3 -m venv --clear "$VENV"
    rm -f "$STAMP"
fi
if [ ! -e "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    step "Installing spaceport[test] into .venv"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
    touch "$STAMP"
else
    detail "up to date"
fi

# --- Browser tests' front-end dependencies ---------------------------------------------
# Exactly the versions tests/browser/package-lock.json pins, into tests/browser/node_modules
# (git-ignored): npm ci only runs when the lock file changed since the last install.
if [ "$WITH_TEST" -eq 1 ]; then
    BROWSER_DEPS="$ROOT/tests/browser"
    step "Checking browser tests' front-end dependencies"
    if [ ! -e "$BROWSER_DEPS/node_modules/.installed-stamp" ] ||
        [ "$BROWSER_DEPS/package-lock.json" -nt "$BROWSER_DEPS/node_modules/.installed-stamp" ]; then
        detail "npm ci in tests/browser"
        (cd "$BROWSER_DEPS" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
        touch "$BROWSER_DEPS/node_modules/.installed-stamp"
    else
        detail "up to date"
    fi
fi

step "Bootstrap done"
