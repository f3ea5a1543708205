"""Checks of the Helm chart and the monitoring files that schemas cannot make.

Used by tests/chart/test.sh; each subcommand exits 1 with one line per problem.

  compare KUSTOMIZE.yaml HELM.yaml [FILE...]   the same objects, Helm's labels aside
  split RENDERED.yaml CORE.yaml MONITORING.yaml  core kinds / monitoring.coreos.com kinds
  monitoring RENDERED.yaml RULES.yaml           structure of ServiceMonitor/PrometheusRule;
                                                writes the rules (as a rules file) to RULES.yaml
  rules PROMETHEUSRULE.yaml RULES.yaml          spec.groups of a PrometheusRule as a rules file
  dashboard DASHBOARD.json RULES.yaml           JSON, datasource variable, panels; writes
                                                every query as a recording rule (for promtool)
  image RENDERED.yaml IMAGE                     the operator container's image is exactly IMAGE
  kinds RENDERED.yaml KIND...                   the rendered kinds are exactly these
  configmap RENDERED.yaml DASHBOARD.json        the dashboard ConfigMap holds the file, labelled
                                                for Grafana's sidecar
  admission RENDERED.yaml [POLICY.yaml [SA [FULLNAME]]]
                                                the admissionregistration objects rendered are
                                                exactly POLICY.yaml's, matching ServiceAccount
                                                SA (default ecr-creds-refresher), named
                                                FULLNAME-least-privilege; none without it
  values-doc VALUES.yaml README.md              every value (and its default) is in README's
                                                table, and every row is a value
  collide RENDERED.yaml...                      no two releases render an object of the same
                                                kind, namespace and name
  notes NOTES.txt CRD.yaml                      NOTES holds `kubectl get ecrps` and an example
                                                ECRPullSecret the CRD's schema accepts
  wiring RENDERED.yaml ARG...                   the container's flags end with ARG...; an
                                                AWS_CA_BUNDLE names a file on a mounted volume
  readme-helm OUT.sh README.md...               writes each README `helm` command line, as
                                                `helm template`, into a bash script
"""
import difflib
import json
import re
import sys

import yaml

# Labels (and selector keys) that Helm adds to the kustomize install's objects.
HELM_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
}
# Annotations Helm acts on, absent from the kustomize install.
HELM_ANNOTATIONS = {"helm.sh/resource-policy"}
MONITORING_GROUP = "monitoring.coreos.com/"
PROM_DATASOURCE = "${datasource}"
METRIC_PREFIX = "ecr_creds_refresher_"


def load(path):
    with open(path) as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def key(o):
    m = o.get("metadata", {})
    return (o.get("kind"), m.get("namespace", ""), m.get("name"))


def strip_helm(v):
    """Removes Helm's labels wherever they appear (labels, selectors, affinity terms), and
    the annotations Helm acts on (an annotations map left empty goes too)."""
    if isinstance(v, dict):
        out = {k: strip_helm(x) for k, x in v.items() if k not in HELM_LABELS}
        ann = out.get("annotations")
        if isinstance(ann, dict) and set(ann) & HELM_ANNOTATIONS:
            ann = {k: x for k, x in ann.items() if k not in HELM_ANNOTATIONS}
            if ann:
                out["annotations"] = ann
            else:
                del out["annotations"]
        return out
    if isinstance(v, list):
        return [strip_helm(x) for x in v]
    return v


def compare(kustomize_path, helm_path, *extra):
    errors = []
    want = {}
    for path in (kustomize_path,) + extra:
        for o in load(path):
            if o["kind"] == "Namespace":
                # `helm install --create-namespace` makes it; a chart must not template its
                # own release namespace.
                print(f"compare: not expected from Helm: Namespace {o['metadata']['name']}"
                      " (helm install --create-namespace)")
                continue
            if path != kustomize_path:
                # Files outside the kustomization get its namespace as kustomize would.
                o.setdefault("metadata", {}).setdefault("namespace", "ecr-creds-refresher")
            want[key(o)] = o
    got = {key(o): strip_helm(o) for o in load(helm_path)}
    for k in sorted(set(want) | set(got), key=str):
        if k not in got:
            errors.append(f"{k}: in the kustomize install, not rendered by Helm")
        elif k not in want:
            errors.append(f"{k}: rendered by Helm, not in the kustomize install")
        elif want[k] != got[k]:
            a = yaml.safe_dump(want[k], sort_keys=True).splitlines()
            b = yaml.safe_dump(got[k], sort_keys=True).splitlines()
            diff = "\n".join(difflib.unified_diff(a, b, "kustomize", "helm", lineterm=""))
            errors.append(f"{k}: differs\n{diff}")
    if not errors:
        print(f"compare: {len(got)} objects equal (Helm's labels aside)")
    return errors


def split(rendered, core_path, mon_path):
    core, mon = [], []
    for o in load(rendered):
        (mon if o["apiVersion"].startswith(MONITORING_GROUP) else core).append(o)
    for path, docs in ((core_path, core), (mon_path, mon)):
        with open(path, "w") as fh:
            yaml.safe_dump_all(docs, fh, sort_keys=False)
    print(f"split: {len(core)} core objects, {len(mon)} monitoring.coreos.com objects")
    return []


def rules_of(rule_obj):
    return {"groups": rule_obj["spec"]["groups"]}


def write_yaml(path, value):
    with open(path, "w") as fh:
        yaml.safe_dump(value, fh, sort_keys=False)


def monitoring(rendered, rules_path):
    """The CRD kinds kubernetes-validate has no schema for: the fields prometheus-operator
    requires, with the types it requires, and cross-references to the rendered objects."""
    errors = []
    objs = load(rendered)
    services = [o for o in objs if o["kind"] == "Service"]
    groups = []
    for o in objs:
        if not o["apiVersion"].startswith(MONITORING_GROUP):
            continue
        name = f"{o['kind']} {o['metadata'].get('name')}"
        if o["apiVersion"] != "monitoring.coreos.com/v1":
            errors.append(f"{name}: apiVersion {o['apiVersion']}, want monitoring.coreos.com/v1")
        md = o.get("metadata", {})
        if not md.get("name") or not md.get("namespace"):
            errors.append(f"{name}: metadata.name and metadata.namespace are required")
        spec = o.get("spec")
        if not isinstance(spec, dict):
            errors.append(f"{name}: no spec")
            continue
        if o["kind"] == "ServiceMonitor":
            allowed = {"selector", "endpoints", "namespaceSelector", "jobLabel"}
            if set(spec) - allowed:
                errors.append(f"{name}: unknown spec fields {sorted(set(spec) - allowed)}")
            sel = spec.get("selector", {}).get("matchLabels", {})
            matched = [s for s in services
                       if s["metadata"].get("namespace") == md.get("namespace")
                       and all(s["metadata"].get("labels", {}).get(k) == v for k, v in sel.items())]
            if not sel or len(matched) != 1:
                errors.append(f"{name}: selector {sel} matches {len(matched)} rendered Services, want 1")
            eps = spec.get("endpoints")
            if not isinstance(eps, list) or not eps:
                errors.append(f"{name}: no endpoints")
                continue
            for ep in eps:
                allowed_ep = {"port", "path", "interval", "scrapeTimeout", "scheme"}
                if set(ep) - allowed_ep:
                    errors.append(f"{name}: unknown endpoint fields {sorted(set(ep) - allowed_ep)}")
                if matched and ep.get("port") not in [p.get("name") for p in matched[0]["spec"]["ports"]]:
                    errors.append(f"{name}: endpoint port {ep.get('port')!r} is not a port of the Service")
                iv = ep.get("interval")
                if iv is not None and not (isinstance(iv, str) and re.fullmatch(r"([0-9]+(ms|s|m|h))+", iv)):
                    errors.append(f"{name}: interval {iv!r} is not a Prometheus duration")
        elif o["kind"] == "PrometheusRule":
            if set(spec) != {"groups"} or not isinstance(spec["groups"], list):
                errors.append(f"{name}: spec must hold exactly a list `groups`")
                continue
            groups.extend(spec["groups"])
        else:
            errors.append(f"{name}: unexpected monitoring.coreos.com kind")
    if groups:
        write_yaml(rules_path, {"groups": groups})
    elif not errors:
        errors.append("no PrometheusRule rendered")
    if not errors:
        print(f"monitoring: structure OK, {sum(len(g['rules']) for g in groups)} rules written to {rules_path}")
    return errors


def rules(rule_file, out):
    objs = load(rule_file)
    if len(objs) != 1 or objs[0].get("kind") != "PrometheusRule":
        return [f"{rule_file}: want exactly one PrometheusRule"]
    write_yaml(out, rules_of(objs[0]))
    return []


def dashboard(path, out):
    errors = []
    try:
        with open(path) as fh:
            d = json.load(fh)
    except (OSError, ValueError) as e:
        return [f"{path}: not valid JSON: {e}"]
    for field in ("title", "uid", "panels", "templating", "schemaVersion"):
        if field not in d:
            errors.append(f"{path}: no {field}")
    variables = d.get("templating", {}).get("list", [])
    ds_vars = [v for v in variables if v.get("type") == "datasource"]
    if len(ds_vars) != 1 or ds_vars[0].get("name") != "datasource" or ds_vars[0].get("query") != "prometheus":
        errors.append(f"{path}: want one templating variable `datasource` of type datasource, query prometheus")
    names = {v.get("name") for v in variables}

    def uses_var(ds, where):
        uid = ds.get("uid") if isinstance(ds, dict) else ds
        if uid != PROM_DATASOURCE:
            errors.append(f"{where}: datasource {ds!r}, want uid {PROM_DATASOURCE}")

    queries = []
    for v in variables:
        if v.get("type") == "query":
            uses_var(v.get("datasource"), f"variable {v.get('name')}")
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q or "")
            if not m:
                errors.append(f"variable {v.get('name')}: query {q!r} is not label_values(SELECTOR, LABEL)")
            else:
                queries.append((f"variable {v.get('name')}", m.group(1)))

    def walk(panels):
        for p in panels:
            if p.get("type") == "row":
                walk(p.get("panels", []))
                continue
            where = f"panel {p.get('id')} {p.get('title')!r}"
            uses_var(p.get("datasource"), where)
            targets = p.get("targets") or []
            if not targets:
                errors.append(f"{where}: no targets")
            for t in targets:
                uses_var(t.get("datasource", p.get("datasource")), f"{where} target {t.get('refId')}")
                if not t.get("expr"):
                    errors.append(f"{where} target {t.get('refId')}: no expr")
                else:
                    queries.append((f"{where} target {t.get('refId')}", t["expr"]))

    walk(d.get("panels", []))
    ids = [p.get("id") for p in d.get("panels", [])]
    if len(ids) != len(set(ids)):
        errors.append(f"{path}: duplicate panel ids")
    # Grafana variables into concrete values, so promtool can parse every query.
    rules_out = []
    for i, (where, q) in enumerate(queries):
        for var in re.findall(r"\$\{?(\w+)\}?", q):
            if var not in names and var not in ("__rate_interval", "__interval", "__range"):
                errors.append(f"{where}: unknown variable ${var}")
        concrete = (q.replace("$__rate_interval", "5m").replace("$__interval", "1m")
                    .replace("$__range", "1h"))
        concrete = re.sub(r"\$\{?(\w+)\}?", ".*", concrete)
        if METRIC_PREFIX not in concrete:
            errors.append(f"{where}: uses no {METRIC_PREFIX}* metric")
        rules_out.append({"record": f"dashboard:query_{i}", "expr": concrete})
    write_yaml(out, {"groups": [{"name": "dashboard-queries", "rules": rules_out}]})
    if not errors:
        print(f"dashboard: JSON, datasource variable and {len(queries)} queries OK")
    return errors


def image(rendered, want):
    imgs = [c["image"] for o in load(rendered) if o["kind"] == "Deployment"
            for c in o["spec"]["template"]["spec"]["containers"]]
    if imgs != [want]:
        return [f"image: rendered {imgs}, want [{want!r}]"]
    print(f"image: {want}")
    return []


def kinds(rendered, *want):
    got = sorted(o["kind"] for o in load(rendered))
    if got != sorted(want):
        return [f"kinds: rendered {got}, want {sorted(want)}"]
    return []


def configmap(rendered, dashboard_path):
    with open(dashboard_path) as fh:
        want = fh.read()
    cms = [o for o in load(rendered) if o["kind"] == "ConfigMap"
           and o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    if len(cms) != 1:
        return [f"configmap: {len(cms)} ConfigMaps labelled grafana_dashboard: \"1\", want 1"]
    data = cms[0].get("data", {})
    if list(data) != ["ecr-creds-refresher.json"] or data["ecr-creds-refresher.json"].strip() != want.strip():
        return ["configmap: data is not exactly {ecr-creds-refresher.json: <the dashboard file>}"]
    json.loads(data["ecr-creds-refresher.json"])
    print("configmap: the dashboard ConfigMap holds the file")
    return []


POLICY_NAME = "ecr-creds-refresher-least-privilege"


def admission(rendered, policy_path=None, service_account="ecr-creds-refresher",
              fullname="ecr-creds-refresher"):
    got = [o for o in load(rendered) if o["apiVersion"].startswith("admissionregistration.k8s.io/")]
    want = []
    if policy_path:
        # The chart points the policy's matchCondition at the release's ServiceAccount and
        # names the policy and its binding after the release; the rules are untouched.
        with open(policy_path) as fh:
            want = [d for d in yaml.safe_load_all(fh) if d]
        new_name = f"{fullname}-least-privilege"
        for o in want:
            if o["metadata"]["name"] == POLICY_NAME:
                o["metadata"]["name"] = new_name
            if o["kind"] == "ValidatingAdmissionPolicyBinding" and o["spec"]["policyName"] == POLICY_NAME:
                o["spec"]["policyName"] = new_name
            for c in o.get("spec", {}).get("matchConditions", []):
                c["expression"] = c["expression"].replace(
                    "endsWith(':ecr-creds-refresher')", f"endsWith(':{service_account}')")
    if got != want:
        return [f"admission: rendered {[key(o) for o in got]}, want {[key(o) for o in want]}"]
    print(f"admission: {len(got)} admission policy objects, as in {policy_path or '(no policy file yet)'}")
    return []


def value_paths(values, prefix=""):
    """Leaf paths of values.yaml (an empty map or list is a leaf), with their defaults."""
    for k, v in values.items():
        path = prefix + k
        if isinstance(v, dict) and v:
            yield from value_paths(v, path + ".")
        else:
            yield path, v


def values_doc(values_path, readme_path):
    with open(values_path) as fh:
        values = yaml.safe_load(fh)
    with open(readme_path) as fh:
        rows = re.findall(r"^\| `([A-Za-z0-9_.]+)` \| ([^|]*) \|", fh.read(), re.M)
    if not rows:
        return [f"{readme_path}: no value table (| `path` | default | description |)"]
    documented = dict(rows)
    leaves = dict(value_paths(values))
    errors = []
    for path, default in leaves.items():
        if path in documented:
            want = f"`{json.dumps(default)}`"
            if documented[path].strip() != want:
                errors.append(f"{readme_path}: `{path}` default says {documented[path].strip()},"
                              f" values.yaml has {want}")
        elif not any(path.startswith(row + ".") for row in documented):
            errors.append(f"{readme_path}: value `{path}` is not documented")
    for row in documented:
        if row not in leaves and not any(p.startswith(row + ".") for p in leaves):
            errors.append(f"{readme_path}: documents `{row}`, which values.yaml does not have")
    if len(rows) != len(documented):
        errors.append(f"{readme_path}: a value is listed twice")
    if not errors:
        print(f"values-doc: all {len(leaves)} values of {values_path} documented in {readme_path}")
    return errors


def collide(*rendered):
    seen = {}
    errors = []
    for path in rendered:
        for o in load(path):
            k = key(o)
            if k in seen:
                errors.append(f"{k} rendered by both {seen[k]} and {path}")
            seen[k] = path
    if not errors:
        print(f"collide: {len(seen)} objects from {len(rendered)} releases, no two alike")
    return errors


def notes(notes_path, crd_path):
    import jsonschema
    with open(notes_path) as fh:
        text = fh.read()
    errors = []
    if not re.search(r"^\s*kubectl get ecrps\s*$", text, re.M):
        errors.append(f"{notes_path}: no `kubectl get ecrps` line")
    m = re.search(r"<<'YAML'\n(.*?)\n\s*YAML\n", text, re.S)
    if not m:
        return errors + [f"{notes_path}: no example ECRPullSecret (kubectl apply -f - <<'YAML' ... YAML)"]
    cr = yaml.safe_load(m.group(1))
    crd = load(crd_path)[0]
    version = next(v for v in crd["spec"]["versions"] if v["storage"])
    want_api = f"{crd['spec']['group']}/{version['name']}"
    if cr.get("apiVersion") != want_api or cr.get("kind") != crd["spec"]["names"]["kind"]:
        errors.append(f"{notes_path}: example is {cr.get('apiVersion')} {cr.get('kind')}, want {want_api}")
    schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for e in jsonschema.Draft7Validator(schema).iter_errors(cr.get("spec")):
        errors.append(f"{notes_path}: example spec refused by the CRD: {e.message}")
    if not errors:
        print(f"notes: `kubectl get ecrps` and an example {cr['kind']} the CRD accepts")
    return errors


def wiring(rendered, *want_tail):
    deps = [o for o in load(rendered) if o["kind"] == "Deployment"]
    if len(deps) != 1:
        return [f"wiring: {len(deps)} Deployments"]
    pod = deps[0]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    errors = []
    args = c.get("args", [])
    if list(want_tail) and args[-len(want_tail):] != list(want_tail):
        errors.append(f"wiring: args {args} do not end with {list(want_tail)}")
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    bundle = env.get("AWS_CA_BUNDLE")
    if bundle:
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounts = [m for m in c.get("volumeMounts", []) if bundle.startswith(m["mountPath"].rstrip("/") + "/")]
        if len(mounts) != 1:
            errors.append(f"wiring: AWS_CA_BUNDLE={bundle} lies under {len(mounts)} mounts, want 1")
        else:
            v = volumes.get(mounts[0]["name"], {})
            src = v.get("configMap") or v.get("secret") or {}
            rel = bundle[len(mounts[0]["mountPath"].rstrip("/")) + 1:]
            if rel not in [i.get("path") for i in src.get("items", [])]:
                errors.append(f"wiring: volume {mounts[0]['name']} does not project {rel}")
            if not mounts[0].get("readOnly"):
                errors.append("wiring: the CA bundle mount is not read-only")
    if not errors:
        print(f"wiring: args end with {list(want_tail)}; AWS_CA_BUNDLE {bundle or '(unset)'} is mounted")
    return errors


# A README command line: `helm install|upgrade --install|template ...`, with its `\`
# continuation lines, inside a ```sh block.
HELM_LINE = re.compile(r"^helm (install|upgrade|template)\b")
CHART_OCI = "oci://ghcr.io/ecr-creds-refresher/charts/ecr-creds-refresher"


def readme_helm(out_path, *readmes):
    """Each documented helm command becomes `"$HELM" template` of the local chart, run by
    bash as written: a quoting mistake fails just as it would for a reader."""
    commands = []
    for path in readmes:
        with open(path) as fh:
            text = fh.read()
        for block in re.findall(r"^```(?:sh|bash|shell)\n(.*?)^```", text, re.M | re.S):
            lines = block.splitlines()
            i = 0
            while i < len(lines):
                if HELM_LINE.match(lines[i]):
                    cmd = [lines[i]]
                    while cmd[-1].rstrip().endswith("\\") and i + 1 < len(lines):
                        i += 1
                        cmd.append(lines[i])
                    commands.append((path, "\n".join(cmd)))
                i += 1
    if not commands:
        return ["readme-helm: no helm command lines found"]
    with open(out_path, "w") as fh:
        fh.write("set -euo pipefail\n")
        for n, (path, cmd) in enumerate(commands):
            first, _, rest = cmd.partition("\n")
            first = re.sub(r"^helm (install|upgrade --install|upgrade|template)", '"$HELM" template', first)
            full = first + ("\n" + rest if rest else "")
            full = full.replace(CHART_OCI, "charts/ecr-creds-refresher")
            # Flags of install/upgrade that template does not take, or that need a cluster.
            full = re.sub(r" --(create-namespace|wait|atomic)\b", "", full)
            full = re.sub(r" --version [^ \n]+", "", full)
            comment = cmd.splitlines()[0].replace("'", "")
            fh.write(f"echo 'readme-helm: {path}: {comment[:100]}'\n")
            fh.write(f"{full} > \"$OUT/readme-helm-{n}.yaml\"\n")
    print(f"readme-helm: {len(commands)} helm command lines from {', '.join(readmes)}")
    return []


COMMANDS = {"values-doc": values_doc, "collide": collide, "notes": notes, "wiring": wiring,
            "readme-helm": readme_helm, "configmap": configmap, "admission": admission, "compare": compare, "split": split, "monitoring": monitoring, "rules": rules,
            "dashboard": dashboard, "image": image, "kinds": kinds}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    errs = COMMANDS[sys.argv[1]](*sys.argv[2:])
    for e in errs:
        print(f"checks.py {sys.argv[1]}: {e}", file=sys.stderr)
    sys.exit(1 if errs else 0)
