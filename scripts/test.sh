#!/usr/bin/env bash
# Bootstrap this machine (with the test servers), lint, then run the test suite.
# Arguments go to pytest; without any, it runs with -ra -v --durations=15.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh --test
# The Kubernetes tests' control plane (etcd, kube-apiserver, kube-scheduler,
# kube-controller-manager, kwok, helm): built from Go modules into a cache outside the repo.
# Warm: a second; cold: about 8.5 minutes on 2 cores, each step timed in the output.
bash scripts/build_control_plane.sh

echo "-----> Linting (ruff)"
.venv/bin/ruff check .

echo "-----> Checking docs/configuration.md against orchestrator/core/settings.py"
.venv/bin/python scripts/gen_config_docs.py --check

if [ "$#" -eq 0 ]; then
    set -- -ra -v --durations=15
fi

echo "-----> Running tests (pytest $*)"
rc=0
.venv/bin/pytest "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
    echo " !     pytest collected no tests: that counts as a failure" >&2
fi
exit "$rc"
