#!/usr/bin/env bash
# Regenerates every generated file: the CRDs (crds/ and the chart's copy) and
# the rendered manifests in deploy/. Tests fail when these drift.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet -- crd >/tmp/ipc-crds.yaml
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
echo "regenerated crds/, the chart's crds/ and deploy/manifests.yaml"
