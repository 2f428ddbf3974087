#!/usr/bin/env bash
# Regenerates every generated file: the CRDs (crds/ and the chart's copy), the
# rendered manifests in deploy/ and the copies of the Argo CD health check.
# Tests fail when these drift.
set -euo pipefail
cd "$(dirname "$0")/.."
# The binary as the tests build it: `cargo run` alone resolves features
# without the dev-dependencies and would rebuild the AWS SDK beside it.
cargo build --quiet --tests
target/debug/instance-profile-controller crd >/tmp/ipc-crds.yaml
python3 - /tmp/ipc-crds.yaml <<'PY'
import sys
docs = open(sys.argv[1]).read().split("---\n")
names = ["instanceprofilebinding", "instanceprofilepolicy"]
for name, doc in zip(names, docs):
    for d in ("crds", "charts/instance-profile-controller/crds"):
        open(f"{d}/{name}.yaml", "w").write(doc)
PY
helm=$(command -v helm || echo .tools/bin/helm)
"$helm" template instance-profile-controller charts/instance-profile-controller --namespace instance-profile-controller --include-crds >deploy/manifests.yaml
bash scripts/generate-argocd.sh
python=$([ -x .venv/bin/python3 ] && echo .venv/bin/python3 || echo python3)
"$python" scripts/generate-chart-readme.py
echo "regenerated crds/, the chart's crds/, deploy/manifests.yaml and the chart README's values table"
