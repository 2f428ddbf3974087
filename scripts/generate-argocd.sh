#!/usr/bin/env bash
# Copies the Argo CD health check, deploy/argocd-health.lua (the one source),
# to the two places that ship it: the argocd-cm patch and the
# resource_customizations layout Argo CD's own repository uses (with its
# health_test.yaml and testdata/). tests/argocd_health.rs fails on drift.
set -euo pipefail
cd "$(dirname "$0")/.."
src=deploy/argocd-health.lua
key=resource.customizations.health.iam.instanceprofile.dev_InstanceProfileBinding

cp "$src" deploy/argocd/iam.instanceprofile.dev/InstanceProfileBinding/health.lua

{
  cat <<YAML
# Installs deploy/argocd-health.lua as Argo CD's health check for
# InstanceProfileBinding, so an Application waits for bindings to be Ready and
# shows a binding that needs a person (Stalled: AccessDenied, RoleNotFound, ...)
# as Degraded.
#
#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file deploy/argocd-cm-patch.yaml
#
# With the argo-cd Helm chart, put the same key under configs.cm instead.
# Generated from deploy/argocd-health.lua by scripts/generate-argocd.sh: edit
# that file, not this one (tests/argocd_health.rs checks they are identical).
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
  $key: |
YAML
  # Indent non-empty lines only: blank lines in a block scalar need no spaces.
  sed 's/^./    &/' "$src"
} >deploy/argocd-cm-patch.yaml

echo "regenerated deploy/argocd-cm-patch.yaml and deploy/argocd/.../health.lua from $src"
