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
#    kustomization.yaml, deploy/); the chart and the kustomize install default to the
#    image the release workflow publishes; the Dockerfile's base images carry a version.
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
# 9. Kubernetes 1.29 (k3s at the edge): with admissionPolicy.enabled=false, extraArgs and
#    aws.caBundle the chart renders and validates strictly against the 1.29 schemas, the
#    flags and the CA mount are wired; with the policy on, it refuses 1.29 and says why.
# 10. Two releases (the second with crds.install=false) render side by side without a
#    name collision, each admission policy naming its own release's ServiceAccount.
# 11. NOTES: an example ECRPullSecret the CRD accepts, and `kubectl get ecrps`. The
#    chart README documents every value of values.yaml with its default. Each `helm`
#    command line of README.md and the chart README runs through bash (as helm template).
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
cmp crd.yaml "$CHART/files/crd.yaml" || fail "$CHART/files/crd.yaml differs from crd.yaml (make chart-sync)"
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
repo="$("$PY" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["image"]["repository"])' "$CHART/values.yaml")"
kust_repo="$(sed -n 's/^ *newName: \(.*\)$/\1/p' kustomization.yaml)"
published="$(sed -n 's/^ *IMAGE: \(.*\)$/\1/p' .github/workflows/release.yml)"
[ -n "$repo" ] && [ "$repo" = "$kust_repo" ] && [ "$repo" = "$published" ] \
    || fail "default images disagree: chart $repo, kustomization $kust_repo, release.yml IMAGE $published"
echo "chart/test.sh: version $crate everywhere; default image $repo (what release.yml publishes); no :latest; Dockerfile bases versioned"

step "3. helm lint --strict"
"$HELM" lint --strict "$CHART" --namespace "$NS"
"$HELM" lint --strict "$CHART" --namespace "$NS" -f tests/chart/values-all.yaml

step "4. defaults render the kustomize install"
render > "$work/default.yaml"
"${KUBECTL:-.tools/bin/kubectl}" kustomize . > "$work/kustomize.yaml"
checks compare "$work/kustomize.yaml" "$work/default.yaml"
render --set serviceMonitor.enabled=true --set prometheusRule.enabled=true > "$work/monitoring.yaml"
checks compare "$work/kustomize.yaml" "$work/monitoring.yaml" deploy/servicemonitor.yaml deploy/prometheusrule.yaml
checks image "$work/default.yaml" "$repo:$crate"
render --set image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef > "$work/digest.yaml"
checks image "$work/digest.yaml" \
    "$repo:$crate@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

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
must_fail "two CA bundle sources" "set configMapName or secretName, not both" \
    --set aws.caBundle.configMapName=a --set aws.caBundle.secretName=b
must_fail "a CA bundle source that is no name" "/aws/caBundle/configMapName" \
    --set 'aws.caBundle.configMapName=Proxy_CA'
must_fail "workers out of range" "/workers" --set workers=0
must_fail "an extra arg that is no flag" "/extraArgs/0" --set 'extraArgs={leader-elect}'
must_fail "credentials source" "/credentialsSource" --set credentialsSource=profile
must_fail "refresh interval" "/minRefreshInterval" --set minRefreshInterval=1d
if [ -n "$policy" ]; then
    must_fail "admission policy on 1.29" "admissionPolicy.enabled needs Kubernetes 1.30 or later.*v1.29.5\+k3s1" \
        --kube-version v1.29.5+k3s1
fi
render --set crds.install=false > "$work/nocrd.yaml"
if grep -q '^kind: CustomResourceDefinition' "$work/nocrd.yaml"; then
    fail "crds.install=false still renders the CRD"
fi
render --set crds.keep=false > "$work/nokeep.yaml"
if grep -q 'helm.sh/resource-policy' "$work/nokeep.yaml"; then
    fail "crds.keep=false still keeps the CRD"
fi
grep -q 'helm.sh/resource-policy: keep' "$work/default.yaml" || fail "the default CRD is not kept on uninstall"
# The CRD upgrade path: helm upgrade applies templates and never touches crds/, so the
# CRD must render as a template (without --include-crds) and crds/ must not exist.
[ ! -e "$CHART/crds" ] || fail "$CHART/crds exists: helm upgrade would never update what it holds"
"$HELM" template "$NS" "$CHART" --namespace "$NS" | grep -q '^kind: CustomResourceDefinition' \
    || fail "the CRD is not a template: helm upgrade would not update it"
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

step "9. Kubernetes 1.29 without the admission policy, with extraArgs and aws.caBundle"
render --kube-version 1.29.5 --set admissionPolicy.enabled=false \
    --set aws.caBundle.configMapName=proxy-ca --set aws.caBundle.key=ca.crt \
    --set 'extraArgs={--use-fips-endpoint,--shutdown-grace=25}' --set workers=8 \
    --set 'allowedRoleArns={arn:aws:iam::123456789012:role/ecr-*}' --set verifyRegistries=false \
    > "$work/edge.yaml"
checks wiring "$work/edge.yaml" --allowed-role-arns=arn:aws:iam::123456789012:role/ecr-* \
    --verify-registries=false --workers=8 --use-fips-endpoint --shutdown-grace=25
checks admission "$work/edge.yaml"
KUBERNETES_VERSIONS=1.29.0 VENV="$VENV" tests/manifests/validate.sh "$work/edge.yaml"
render --kube-version v1.29.5+k3s1 --set admissionPolicy.enabled=false \
    --set aws.caBundle.secretName=proxy-ca > "$work/edge-secret.yaml"
checks wiring "$work/edge-secret.yaml"
KUBERNETES_VERSIONS=1.29.0 VENV="$VENV" tests/manifests/validate.sh "$work/edge-secret.yaml"

step "10. two releases side by side"
"$HELM" template team-b "$CHART" --namespace "$NS" --set crds.install=false > "$work/team-b.yaml"
"$HELM" template team-c "$CHART" --namespace team-c --set crds.install=false \
    --set serviceAccount.name=puller > "$work/team-c.yaml"
checks collide "$work/default.yaml" "$work/team-b.yaml" "$work/team-c.yaml"
checks admission "$work/team-b.yaml" $policy ${policy:+team-b-ecr-creds-refresher team-b-ecr-creds-refresher}
checks admission "$work/team-c.yaml" $policy ${policy:+puller team-c-ecr-creds-refresher}
VENV="$VENV" tests/manifests/validate.sh "$work/team-b.yaml"

step "11. NOTES, the chart README, README's helm command lines"
"$HELM" install --dry-run=client "$NS" "$CHART" --namespace "$NS" > "$work/notes.txt"
checks notes "$work/notes.txt" crd.yaml
checks values-doc "$CHART/values.yaml" "$CHART/README.md"
checks readme-helm "$work/readme-helm.sh" README.md "$CHART/README.md"
OUT="$work" HELM="$HELM" bash "$work/readme-helm.sh"

echo "chart/test.sh: OK"
