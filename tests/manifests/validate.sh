#!/usr/bin/env bash
# Validates the shipped manifests strictly against Kubernetes schemas, and checks the
# invariants the schemas cannot see (tests/manifests/check_invariants.py).
#
#   tests/manifests/validate.sh            # from the repository root
#   tests/manifests/validate.sh FILE...    # only these files (e.g. a Helm render)
#
# What it validates: crd.yaml, rbac.yaml, deploy/*.yaml and the output of
# `kubectl kustomize .`, each against every version in $KUBERNETES_VERSIONS
# (default: 1.30.0, our oldest supported, and 1.37.0, the newest the pinned
# kubernetes-validate knows). The deploy/ files of prometheus-operator kinds
# (monitoring.coreos.com: ServiceMonitor, PrometheusRule) have no schema here; they are
# named on the output and checked by tests/chart/test.sh (structure, promtool).
#
# Nothing is skipped silently: kubernetes-validate only WARNs (exit 0) on a kind it has
# no schema for, so any WARN, ERROR or FATAL line fails this script, and every YAML
# document of every file must have produced one "passed" line per version.
#
# Needs: kubectl (for kustomize) and python3. kubernetes-validate is installed into
# $VENV (default .venv) from tests/manifests/requirements.txt when missing.
set -euo pipefail

cd "$(dirname "$0")/../.."
VENV="${VENV:-.venv}"
KUBERNETES_VERSIONS="${KUBERNETES_VERSIONS:-1.30.0 1.37.0}"
KUBECTL="${KUBECTL:-kubectl}"

fail() { echo "validate.sh: FAIL: $*" >&2; exit 1; }

[ "$#" -gt 0 ] || command -v "$KUBECTL" >/dev/null || fail "kubectl not found (set KUBECTL=/path/to/kubectl)"
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
    echo "validate.sh: installing kubernetes-validate into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet -r tests/manifests/requirements.txt
fi
PY="$VENV/bin/python"

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
rendered="$workdir/rendered.yaml"

if [ "$#" -gt 0 ]; then
    files=("$@")
    rendered=""
else
    [ -f crd.yaml ] || fail "crd.yaml is missing"
    [ -f rbac.yaml ] || fail "rbac.yaml is missing"
    shopt -s nullglob
    deploy_files=()
    for f in deploy/*.yaml; do
        if grep -q '^apiVersion: monitoring.coreos.com/' "$f"; then
            echo "validate.sh: $f: prometheus-operator kind, checked by tests/chart/test.sh"
        else
            deploy_files+=("$f")
        fi
    done
    [ "${#deploy_files[@]}" -gt 0 ] || fail "no deploy/*.yaml"
    "$KUBECTL" kustomize . > "$rendered" || fail "kubectl kustomize . failed"
    files=(crd.yaml rbac.yaml "${deploy_files[@]}" "$rendered")
fi

# Documents per file: the number of "passed" lines to expect per version.
expected=0
for f in "${files[@]}"; do
    n="$("$PY" -c '
import sys, yaml
with open(sys.argv[1]) as fh:
    docs = [d for d in yaml.safe_load_all(fh) if d is not None]
for d in docs:
    if not isinstance(d, dict) or not d.get("kind") or not d.get("apiVersion"):
        sys.exit(f"{sys.argv[1]}: a document without kind/apiVersion")
print(len(docs))
' "$f")" || fail "$f is not valid YAML of Kubernetes objects"
    [ "$n" -gt 0 ] || fail "$f holds no object"
    expected=$((expected + n))
done

status=0
for v in $KUBERNETES_VERSIONS; do
    out="$workdir/out-$v.txt"
    rc=0
    "$VENV/bin/kubernetes-validate" --strict -k "$v" "${files[@]}" > "$out" 2>&1 || rc=$?
    sed "s#$workdir/rendered.yaml#<kustomize .>#" "$out" | grep -v '^INFO ' || true
    passed="$(grep -c '^INFO .* passed for resource ' "$out" || true)"
    if [ "$rc" -ne 0 ] || grep -qE '^(WARN|ERROR|FATAL)' "$out"; then
        echo "validate.sh: Kubernetes $v: failures or skipped objects above" >&2
        status=1
    elif [ "$passed" -ne "$expected" ]; then
        echo "validate.sh: Kubernetes $v: $passed of $expected objects validated" >&2
        status=1
    else
        echo "validate.sh: Kubernetes $v: all $expected objects valid (strict)"
    fi
done

if [ -n "$rendered" ]; then
    "$PY" tests/manifests/check_invariants.py "$rendered" || status=1
fi

[ "$status" -eq 0 ] || fail "manifest validation failed"
echo "validate.sh: OK"
