"""Invariants of the rendered install (`kubectl kustomize .`) that schemas cannot see.

Usage: check_invariants.py [--namespace-external] RENDERED.yaml
  (exit 1 with one line per broken invariant). --namespace-external: the install does not
  create its namespace (a Helm release with --create-namespace).
"""
import sys

import yaml

OPERATOR = "ecr-creds-refresher"
LEASE_VERBS = {"get", "create", "update"}


def selects(selector, labels):
    """Whether a matchLabels selector (non-empty) selects these labels."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def main(path, namespace_external=False):
    with open(path) as fh:
        objs = [o for o in yaml.safe_load_all(fh) if o]
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    errors = []

    deployments = [d for d in by_kind.get("Deployment", []) if d["metadata"]["name"] == OPERATOR]
    if len(deployments) != 1:
        return [f"expected one Deployment {OPERATOR}, found {len(deployments)}"]
    dep = deployments[0]
    ns = dep["metadata"]["namespace"]
    pod = dep["spec"]["template"]["spec"]
    sa = pod.get("serviceAccountName")

    # The install creates the namespace it deploys into.
    if not namespace_external and not any(n["metadata"]["name"] == ns for n in by_kind.get("Namespace", [])):
        errors.append(f"Namespace {ns} (of the Deployment) is not part of the install")

    # RBAC: no wildcards anywhere; every binding points at the operator's ServiceAccount.
    for kind in ("ClusterRole", "Role"):
        for role in by_kind.get(kind, []):
            for rule in role.get("rules", []):
                for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                    if "*" in rule.get(field, []):
                        errors.append(f"{kind} {role['metadata']['name']}: wildcard in {field}")
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for b in by_kind.get(kind, []):
            for s in b.get("subjects", []):
                if s.get("kind") == "ServiceAccount" and (s.get("name"), s.get("namespace")) != (sa, ns):
                    errors.append(
                        f"{kind} {b['metadata']['name']}: subject {s.get('namespace')}/{s.get('name')}"
                        f" is not the operator's ServiceAccount {ns}/{sa}"
                    )
    if not any(s["metadata"]["name"] == sa and s["metadata"].get("namespace") == ns
               for s in by_kind.get("ServiceAccount", [])):
        errors.append(f"ServiceAccount {ns}/{sa} is not part of the install")

    # Leases in the operator's namespace; events in `default`.
    roles = {(r["metadata"].get("namespace"), r["metadata"]["name"]): r for r in by_kind.get("Role", [])}
    lease_verbs = {
        v
        for (rns, _), r in roles.items() if rns == ns
        for rule in r.get("rules", []) if "leases" in rule.get("resources", [])
        for v in rule.get("verbs", [])
    }
    # Writes are patches; only leader election replaces (PUTs) its Lease. Events are
    # created, never patched. tests/rbac_by_use.rs proves each grant is used.
    for kind in ("ClusterRole", "Role"):
        for role in by_kind.get(kind, []):
            for rule in role.get("rules", []):
                res = set(rule.get("resources", []))
                if "update" in rule.get("verbs", []) and res - {"leases"}:
                    errors.append(f"{kind} {role['metadata']['name']}: update on {sorted(res - {'leases'})}"
                                  " (the operator patches; only the Lease is replaced)")
                if "events" in res and set(rule.get("verbs", [])) != {"create"}:
                    errors.append(f"{kind} {role['metadata']['name']}: events verbs"
                                  f" {sorted(rule.get('verbs', []))}, want [create]")
                if any(r.endswith("/finalizers") for r in res):
                    errors.append(f"{kind} {role['metadata']['name']}: a /finalizers grant"
                                  " (the operator sets no ownerReferences)")
    if lease_verbs != LEASE_VERBS:
        errors.append(f"lease verbs in {ns} are {sorted(lease_verbs)}, want {sorted(LEASE_VERBS)}")
    if not any(rns == "default" and any("events" in rule.get("resources", []) for rule in r.get("rules", []))
               for (rns, _), r in roles.items()):
        errors.append("no Role granting events in namespace default")
    for b in by_kind.get("RoleBinding", []):
        ref = (b["metadata"].get("namespace"), b["roleRef"]["name"])
        if b["roleRef"]["kind"] == "Role" and ref not in roles:
            errors.append(f"RoleBinding {b['metadata']['name']} points at missing Role {ref[0]}/{ref[1]}")

    # Pod hardening and probes.
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        errors.append("pod securityContext.runAsNonRoot is not true")
    for c in pod["containers"]:
        csc = c.get("securityContext", {})
        want = {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": 65532,
        }
        for k, v in want.items():
            if csc.get(k) != v:
                errors.append(f"container {c['name']}: securityContext.{k} is {csc.get(k)!r}, want {v!r}")
        if csc.get("capabilities", {}).get("drop") != ["ALL"]:
            errors.append(f"container {c['name']}: capabilities do not drop ALL")
        if csc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            errors.append(f"container {c['name']}: seccompProfile is not RuntimeDefault")
        if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
            errors.append(f"container {c['name']}: liveness probe is not /healthz")
        if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
            errors.append(f"container {c['name']}: readiness probe is not /readyz")
        if "--leader-elect" not in c.get("args", []) and dep["spec"].get("replicas", 1) > 1:
            errors.append("more than one replica without --leader-elect")
        if "limits" not in c.get("resources", {}) or "memory" not in c["resources"]["limits"]:
            errors.append(f"container {c['name']}: no memory limit")

    # The metrics Service selects the operator pods and targets a declared port.
    labels = dep["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"] for c in pod["containers"] for p in c.get("ports", [])}
    for svc in by_kind.get("Service", []):
        sel = svc["spec"].get("selector", {})
        if not sel or any(labels.get(k) != v for k, v in sel.items()):
            errors.append(f"Service {svc['metadata']['name']} does not select the operator pods")
        for p in svc["spec"]["ports"]:
            if isinstance(p.get("targetPort"), str) and p["targetPort"] not in ports:
                errors.append(f"Service {svc['metadata']['name']}: targetPort {p['targetPort']} is not a container port")

    # A PodDisruptionBudget protects the operator pods and leaves room to drain.
    replicas = dep["spec"].get("replicas", 1)
    for pdb in by_kind.get("PodDisruptionBudget", []):
        name = pdb["metadata"]["name"]
        if not selects(pdb["spec"].get("selector", {}).get("matchLabels"), labels):
            errors.append(f"PodDisruptionBudget {name} does not select the operator pods")
        min_available = pdb["spec"].get("minAvailable")
        if not isinstance(min_available, int) or not 1 <= min_available < replicas:
            errors.append(f"PodDisruptionBudget {name}: minAvailable {min_available!r} with"
                          f" {replicas} replicas (want at least 1 and fewer than the replicas)")

    # The NetworkPolicy selects the operator pods and admits the metrics and probe ports only.
    for np in by_kind.get("NetworkPolicy", []):
        name = np["metadata"]["name"]
        spec = np["spec"]
        if not selects(spec.get("podSelector", {}).get("matchLabels"), labels):
            errors.append(f"NetworkPolicy {name} does not select the operator pods")
        if sorted(spec.get("policyTypes", [])) != ["Egress", "Ingress"]:
            errors.append(f"NetworkPolicy {name}: policyTypes {spec.get('policyTypes')}, want Ingress and Egress")
        container_ports = {p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}
        for rule in spec.get("ingress", []):
            ports = {p.get("port") for p in rule.get("ports", [])}
            if not rule.get("ports") or ports != container_ports:
                errors.append(f"NetworkPolicy {name}: an ingress rule admits {sorted(ports, key=str)},"
                              f" want exactly the container ports {sorted(container_ports)}")
        egress_ports = {(p.get("protocol", "TCP"), p.get("port"))
                        for rule in spec.get("egress", []) for p in rule.get("ports", [])}
        for want_port in (("UDP", 53), ("TCP", 53), ("TCP", 443)):
            if want_port not in egress_ports:
                errors.append(f"NetworkPolicy {name}: no egress to {want_port[1]}/{want_port[0]}")
        if any(not rule.get("ports") for rule in spec.get("egress", [])):
            errors.append(f"NetworkPolicy {name}: an egress rule without ports (allows everything)")

    # The CRD the operator watches is part of the install.
    crds = [c for c in by_kind.get("CustomResourceDefinition", [])
            if c["metadata"]["name"] == "ecrpullsecrets.ecr.creds.dev"]
    if len(crds) != 1:
        errors.append("CRD ecrpullsecrets.ecr.creds.dev missing from the install")
    elif crds[0]["spec"].get("scope") != "Cluster":
        errors.append("CRD ecrpullsecrets.ecr.creds.dev is not cluster-scoped")
    return errors


if __name__ == "__main__":
    args = sys.argv[1:]
    external = "--namespace-external" in args
    args = [a for a in args if a != "--namespace-external"]
    if len(args) != 1:
        sys.exit(__doc__)
    errs = main(args[0], namespace_external=external)
    for e in errs:
        print(f"check_invariants: {e}", file=sys.stderr)
    if errs:
        sys.exit(1)
    print("check_invariants: OK")
