#!/usr/bin/env bash
# Validates the manifests against the Kubernetes schemas (strict: unknown fields fail).
# Installs kubernetes-validate from PyPI into a private virtualenv when missing.
set -euo pipefail
cd "$(dirname "$0")"
venv=${KUBERNETES_VALIDATE_VENV:-${TMPDIR:-/tmp}/meridian-kubernetes-validate}
if ! command -v kubernetes-validate >/dev/null; then
    if [ ! -x "$venv/bin/kubernetes-validate" ]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q kubernetes-validate
    fi
    PATH="$venv/bin:$PATH"
fi
kubernetes-validate --strict common.yaml us-east-1.yaml us-west-2.yaml eu-west-1.yaml
