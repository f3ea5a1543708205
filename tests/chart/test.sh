#!/usr/bin/env bash
# Tests of the Helm chart, the alerts and the dashboard (run by `make test`, which
# installs the tools first: helm and kubectl in .tools/bin, promtool from Debian's
# `prometheus`, kubernetes-validate in .venv).
#
#   tests/chart/test.sh      # from the repository root
#
# 1. The chart's copies are byte-identical to their sources (crd.yaml,
#    deploy/prometheusrule.yaml, deploy/admission-policy.yaml once it exists);
#    `make chart-sync` fixes them.
# 2. No image is referenced as :latest; versions agree (Cargo.toml, Chart.yaml,
#    kustomization.yaml, deploy/); the Dockerfile's base images carry a version.
# 3. helm lint --strict, with default values and with every toggle on.
# 4. Default values render exactly the kustomize install (Helm's own labels aside), and
#    the monitoring toggles render exactly deploy/servicemonitor.yaml and
#    deploy/prometheusrule.yaml.
# 5. The values schema rejects what it must (unknown keys, tag latest, bad enums), and
#    the templates refuse inconsistent settings.
# 6. Both renders (defaults, every toggle on) validate strictly against the Kubernetes
#    1.30.0 and 1.37.0 schemas (core kinds; tests/manifests/validate.sh). The
#    prometheus-operator kinds, for which kubernetes-validate has no schema, get a
#    structural check (checks.py monitoring) and their rules `promtool check rules`.
# 7. promtool test rules: every shipped alert fires and stays quiet on synthetic series
#    (tests/alerts/alerts_test.yaml).
# 8. The dashboard: valid JSON, one `datasource` variable used by every panel and query,
#    every query parsed by promtool; the chart's ConfigMap holds it.
# Metric names used by the rules and the dashboard are checked against a running
# operator by tests/packaging_metrics.rs (cargo test).
set -euo pipefail

cd "$(dirname "$0")/../.."
HELM="${HELM:-.tools/bin/helm}"
PROMTOOL="${PROMTOOL:-promtool}"
VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
CHART=charts/ecr-creds-refresher
NS=ecr-creds-refresher

fail() { echo "chart/test.sh: FAIL: $*" >&2; exit 1; }
step() { echo "chart/test.sh: --- $*"; }

[ -x "$HELM" ] || fail "helm not found at $HELM (make tools)"
command -v "$PROMTOOL" >/dev/null || fail "promtool not found (apt-get install prometheus)"
[ -x "$PY" ] || fail "no python venv at $VENV (make venv)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
checks() { "$PY" tests/chart/checks.py "$@"; }
render() { "$HELM" template "$NS" "$CHART" --namespace "$NS" --include-crds "$@"; }

step "1. the chart's copies equal their sources"
cmp crd.yaml "$CHART/crds/crd.yaml" || fail "$CHART/crds/crd.yaml differs from crd.yaml (make chart-sync)"
cmp deploy/prometheusrule.yaml "$CHART/files/prometheusrule.yaml" \
    || fail "$CHART/files/prometheusrule.yaml differs from deploy/prometheusrule.yaml (make chart-sync)"
policy=""
if [ -f deploy/admission-policy.yaml ]; then
    policy=deploy/admission-policy.yaml
    cmp "$policy" "$CHART/files/admission-policy.yaml" \
        || fail "$CHART/files/admission-policy.yaml differs from $policy (make chart-sync)"
else
    [ ! -e "$CHART/files/admission-policy.yaml" ] \
        || fail "$CHART/files/admission-policy.yaml exists without deploy/admission-policy.yaml"
    echo "chart/test.sh: no deploy/admission-policy.yaml yet: admissionPolicy.enabled renders nothing"
fi

step "2. image references and versions"
if grep -rnE '^\s*(-\s*)?(image:\s*\S+:latest\b|(newTag|tag):\s*"?latest"?\s*$)' \
        deploy "$CHART" kustomization.yaml tests/chart/values-all.yaml; then
    fail "an image referenced as latest (above)"
fi
crate="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
app="$(sed -n 's/^appVersion: "\(.*\)"$/\1/p' "$CHART/Chart.yaml")"
tag="$(sed -n 's/^ *newTag: "\(.*\)"$/\1/p' kustomization.yaml)"
deployed="$(sed -n 's/^ *image: ecr-creds-refresher:\(.*\)$/\1/p' deploy/deployment.yaml)"
[ -n "$crate" ] && [ "$crate" = "$app" ] && [ "$crate" = "$tag" ] && [ "$crate" = "$deployed" ] \
    || fail "versions disagree: Cargo.toml $crate, Chart.yaml appVersion $app, kustomization newTag $tag, deploy/deployment.yaml $deployed"
"$PY" - Dockerfile <<'PY'
import re, sys
text = open(sys.argv[1]).read()
args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
for line in re.findall(r"^FROM (\S+)", text, re.M):
    image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), "<unset>"), line)
    # scratch is the empty image: nothing to pin. Others: name:X.Y.Z[-variant][@digest].
    if image != "scratch" and not re.search(r":\d+\.\d+\.\d+(-[a-z0-9]+)?(@sha256:[0-9a-f]{64})?$", image):
        sys.exit(f"chart/test.sh: FAIL: Dockerfile: FROM {line} ({image}) is not pinned to a full version")
PY
echo "chart/test.sh: version $crate everywhere; no :latest; Dockerfile bases versioned"

step "3. helm lint --strict"
"$HELM" lint --strict "$CHART" --namespace "$NS"
"$HELM" lint --strict "$CHART" --namespace "$NS" -f tests/chart/values-all.yaml

step "4. defaults render the kustomize install"
render > "$work/default.yaml"
"${KUBECTL:-.tools/bin/kubectl}" kustomize . > "$work/kustomize.yaml"
checks compare "$work/kustomize.yaml" "$work/default.yaml"
render --set serviceMonitor.enabled=true --set prometheusRule.enabled=true > "$work/monitoring.yaml"
checks compare "$work/kustomize.yaml" "$work/monitoring.yaml" deploy/servicemonitor.yaml deploy/prometheusrule.yaml
checks image "$work/default.yaml" "ecr-creds-refresher:$crate"
render --set image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef > "$work/digest.yaml"
checks image "$work/digest.yaml" \
    "ecr-creds-refresher:$crate@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

step "5. the schema and the templates refuse bad values"
# must_fail WHY EXPECTED-ERROR-PATTERN HELM-ARGS...: the render fails, for that reason.
must_fail() {
    local why="$1" want="$2"; shift 2
    if render "$@" > "$work/bad.yaml" 2> "$work/bad.err"; then
        fail "helm template $* succeeded, but must fail: $why"
    fi
    grep -qE "$want" "$work/bad.err" || { cat "$work/bad.err" >&2; fail "helm template $* failed, but not with /$want/"; }
    echo "chart/test.sh: refused ($why): $(grep -m1 -E "$want" "$work/bad.err" | sed 's/^ *//' | cut -c1-150)"
}
must_fail "unknown value" "additional properties 'imageTag' not allowed" --set imageTag=1.0
must_fail "tag latest" "/image/tag" --set image.tag=latest
must_fail "digest not sha256" "/image/digest" --set image.digest=abc
must_fail "log format" "/logFormat" --set logFormat=xml
must_fail "replicas without leader election" "needs leaderElection.enabled" --set leaderElection.enabled=false
must_fail "ServiceMonitor without Service" "needs metrics.service.enabled" \
    --set serviceMonitor.enabled=true --set metrics.service.enabled=false
render --set replicaCount=1 --set leaderElection.enabled=false > "$work/single.yaml"
checks kinds "$work/single.yaml" ClusterRole ClusterRoleBinding CustomResourceDefinition Deployment \
    NetworkPolicy Role Role RoleBinding RoleBinding Service ServiceAccount \
    ${policy:+ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding}

step "6. both renders validate strictly (core kinds), monitoring kinds structurally"
render -f tests/chart/values-all.yaml > "$work/all.yaml"
for name in default all; do
    checks split "$work/$name.yaml" "$work/$name-core.yaml" "$work/$name-monitoring.yaml"
    VENV="$VENV" tests/manifests/validate.sh "$work/$name-core.yaml"
    "$PY" tests/manifests/check_invariants.py --namespace-external "$work/$name.yaml"
done
if grep -q '^kind:' "$work/default-monitoring.yaml"; then
    fail "the default render holds prometheus-operator objects"
fi
checks monitoring "$work/all.yaml" "$work/chart-rules.yaml"
"$PROMTOOL" check rules "$work/chart-rules.yaml"
# values-all.yaml names the ServiceAccount `refresher`: the policy must follow it.
checks admission "$work/all.yaml" $policy ${policy:+refresher}
checks configmap "$work/all.yaml" "$CHART/dashboards/ecr-creds-refresher.json"

step "7. promtool test rules"
mkdir -p "$work/alerts"
checks rules deploy/prometheusrule.yaml "$work/alerts/rules.yaml"
"$PY" -c 'import sys, yaml; sys.exit(yaml.safe_load(open(sys.argv[1])) != yaml.safe_load(open(sys.argv[2])))' \
    "$work/alerts/rules.yaml" "$work/chart-rules.yaml" \
    || fail "the chart's PrometheusRule does not hold deploy/prometheusrule.yaml's rules"
cp tests/alerts/alerts_test.yaml "$work/alerts/"
"$PROMTOOL" check rules "$work/alerts/rules.yaml"
"$PROMTOOL" test rules "$work/alerts/alerts_test.yaml"
# Every shipped alert has a unit test that expects it to fire.
"$PY" - "$work/alerts/rules.yaml" tests/alerts/alerts_test.yaml <<'PY'
import sys, yaml
alerts = {r["alert"] for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"] if "alert" in r}
cases = [t for case in yaml.safe_load(open(sys.argv[2]))["tests"] for t in case.get("alert_rule_test", [])]
firing = {t["alertname"] for t in cases if t.get("exp_alerts")}
quiet = {t["alertname"] for t in cases if not t.get("exp_alerts")}
if alerts - firing or alerts - quiet:
    sys.exit(f"chart/test.sh: FAIL: alerts never tested firing {sorted(alerts - firing)},"
             f" never tested quiet {sorted(alerts - quiet)}")
print(f"chart/test.sh: all {len(alerts)} shipped alerts tested firing and not firing")
PY

step "8. the dashboard"
checks dashboard "$CHART/dashboards/ecr-creds-refresher.json" "$work/dashboard-rules.yaml"
"$PROMTOOL" check rules "$work/dashboard-rules.yaml"

echo "chart/test.sh: OK"
