#!/usr/bin/env bash
# The main job on a local default: start a local AWS (moto), then reconcile
# every binding in examples/ with `apply`, printing the AWS calls it made.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/local-aws.sh)"
cargo run --quiet -- apply -f examples/ --verbose "$@"
