#!/usr/bin/env bash
# The whole test suite: unit, moto integration, controller e2e (API emulator,
# and a real kube-apiserver + etcd), chart checks, the shipped files and the
# install docs against the real API server.
#
# The real API server comes from ../shared/kube (see its README): when
# ../shared/kube/install.sh exists and KUBEBUILDER_ASSETS is not set, it is
# installed into .tools/kube and KUBEBUILDER_ASSETS points there. Without it
# the real-server tests print `skipped: …` and pass, except under CI=true,
# where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/python-env.sh
have() { command -v "$1" >/dev/null 2>&1 || [ -x ".tools/bin/$1" ]; }
{ have helm && have kubectl; } || bash scripts/install-helm.sh
export MOTO_SERVER="$PWD/.venv/bin/moto_server"
if [ -z "${KUBEBUILDER_ASSETS:-}" ] && [ -f ../shared/kube/install.sh ]; then
  if assets=$(bash ../shared/kube/install.sh .tools/kube); then
    export KUBEBUILDER_ASSETS="$assets"
  elif [ "${CI:-}" = true ]; then
    echo "test.sh: ../shared/kube/install.sh failed; under CI the real-API-server tests must run" >&2
    exit 1
  else
    echo "test.sh: ../shared/kube/install.sh failed; the real-API-server tests will skip" >&2
  fi
fi
echo "KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-(not set: real-API-server tests skip)}"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
