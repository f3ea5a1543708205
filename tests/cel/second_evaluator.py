#!/usr/bin/env python3
"""Replays the admission cases the Kubernetes emulator evaluated through a second CEL
implementation (Google's cel-cpp, via cel-expr-python) and reports every disagreement.

    second_evaluator.py POLICY.yaml CASES.jsonl

POLICY.yaml is read for its ValidatingAdmissionPolicy: matchConstraints, matchConditions,
variables, validations (with message / messageExpression) and failurePolicy, exactly as
shipped; nothing here repeats an expression. CASES.jsonl holds one case per line as the
emulator writes it with K8S_EMULATOR_ADMISSION_CASES set: the request, object and
oldObject the policy saw and the emulator's verdict. Cases evaluated under other policies
than the shipped file are skipped.

The semantics are kube-apiserver's (k8s.io/apiserver/pkg/admission/plugin/policy/
validating): a false matchCondition skips the policy, an erroring one denies under
failurePolicy Fail; variables are lazy (an erroring variable errors only where it is
used; CEL's || and && absorb errors on the side that does not decide); validations in
order, the first false denies with its messageExpression (one line of at most 5120
bytes), else its message; an erroring validation denies under Fail.

Prints a JSON summary on the last line; exits 1 on any disagreement.
"""
import json
import sys

import yaml
from cel_expr_python import cel

NAMES = ["object", "oldObject", "request", "params", "namespaceObject", "variables"]


def load_policy(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    policies = [d for d in docs if d.get("kind") == "ValidatingAdmissionPolicy"]
    if len(policies) != 1:
        raise SystemExit(f"{path}: expected one ValidatingAdmissionPolicy, found {len(policies)}")
    bindings = [d for d in docs if d.get("kind") == "ValidatingAdmissionPolicyBinding"
                and d["spec"].get("policyName") == policies[0]["metadata"]["name"]
                and "Deny" in d["spec"].get("validationActions", [])]
    if not bindings:
        raise SystemExit(f"{path}: no Deny binding for the policy")
    return policies[0]["spec"]


def plain(v):
    """A CEL result as plain Python (maps and lists hold CEL accessors), so that a
    variable's value can be handed back in as data."""
    if hasattr(v, "value") and not isinstance(v, (dict, list, str, bytes, bool, int, float)):
        return plain(v.value())
    if isinstance(v, dict):
        return {plain(k): plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


class Policy:
    def __init__(self, spec):
        self.env = cel.NewEnv(variables={n: cel.Type.DYN for n in NAMES})
        self.spec = spec
        self.fail_closed = spec.get("failurePolicy", "Fail") == "Fail"
        c = self.env.compile
        self.conditions = [(m["name"], c(m["expression"])) for m in spec.get("matchConditions", [])]
        self.variables = [(v["name"], c(v["expression"])) for v in spec.get("variables", [])]
        self.validations = [
            (v, c(v["expression"]), c(v["messageExpression"]) if v.get("messageExpression") else None)
            for v in spec["validations"]
        ]

    def matches(self, req):
        res, op = req["resource"], req["operation"]
        sub = req.get("subResource", "")
        want = f"{res['resource']}/{sub}" if sub else res["resource"]
        for rule in self.spec["matchConstraints"]["resourceRules"]:
            if (any(g in ("*", res["group"]) for g in rule.get("apiGroups", []))
                    and any(v in ("*", res["version"]) for v in rule.get("apiVersions", []))
                    and any(o in ("*", op) for o in rule.get("operations", []))
                    and any(r in ("*", want) for r in rule.get("resources", []))):
                return True
        return False

    @staticmethod
    def value(compiled, data):
        """(ok, value): ok is False when the evaluation errored."""
        r = compiled.eval(data=data)
        if r.type() == cel.Type.ERROR:
            return False, str(r)
        return True, plain(r.value())

    def verdict(self, case):
        """None when admitted; ('error', text) or ('deny', message) when denied."""
        req = case["request"]
        if not self.matches(req):
            return None
        data = {"object": case["object"], "oldObject": case["oldObject"], "request": req,
                "params": None, "namespaceObject": None, "variables": {}}
        errored = None
        for name, expr in self.conditions:
            ok, v = self.value(expr, data)
            if ok and v is False:
                return None
            if not ok or not isinstance(v, bool):
                errored = errored or f"matchCondition {name}: {v}"
        if errored:
            return ("error", errored) if self.fail_closed else None
        # Lazy variables: one that errors is left out, so using it errors (and CEL's
        # error-absorbing || and && decide exactly as lazy evaluation would).
        variables = {}
        for name, expr in self.variables:
            ok, v = self.value(expr, dict(data, variables=variables))
            if ok:
                variables[name] = v
        data["variables"] = variables
        for v, expr, message_expr in self.validations:
            ok, result = self.value(expr, data)
            if ok and result is True:
                continue
            if not ok or not isinstance(result, bool):
                if self.fail_closed:
                    return ("error", f"{v['expression']!r}: {result}")
                continue
            message = None
            if message_expr is not None:
                ok, m = self.value(message_expr, data)
                if ok and isinstance(m, str):
                    m = m.strip()
                    if m and len(m.encode()) <= 5120 and "\n" not in m:
                        message = m
            if message is None:
                message = (v.get("message") or "").strip() or f"failed expression: {v['expression'].strip()}"
            return ("deny", message)
        return None


def disagreement(mine, theirs):
    """Why the emulator's verdict (theirs) is not this evaluator's (mine), or None."""
    if mine is None and theirs is None:
        return None
    if mine is None or theirs is None:
        return f"cel-cpp says {'admit' if mine is None else mine}, the emulator {'admit' if theirs is None else theirs}"
    reason, text = theirs
    if mine[0] == "error":
        return None if reason == "Invalid" and "error" in text else f"cel-cpp errors ({mine[1]}), the emulator: {theirs}"
    # A policy's denial: kube-apiserver's sentence ends with the validation's message.
    return None if text.endswith(": " + " ".join(mine[1].split())) or text.endswith(": " + mine[1]) \
        else f"cel-cpp denies with {mine[1]!r}, the emulator: {text!r}"


def main(policy_path, cases_path):
    policy = Policy(load_policy(policy_path))
    checked, skipped, outcomes, bad = 0, 0, {"admitted": 0, "denied": 0, "unmatched": 0}, []
    for n, line in enumerate(open(cases_path), 1):
        case = json.loads(line)
        if not case["shipped"]:
            skipped += 1
            continue
        checked += 1
        theirs = tuple(case["denied"]) if case.get("denied") else None
        mine = policy.verdict(case)
        if not policy.matches(case["request"]):
            outcomes["unmatched"] += 1
        else:
            outcomes["denied" if mine else "admitted"] += 1
        why = disagreement(mine, theirs)
        if why:
            r = case["request"]
            bad.append(f"case {n} ({r['operation']} {r['resource']['resource']} "
                       f"{r.get('namespace', '')}/{r.get('name', '')}): {why}")
    for b in bad:
        print(b)
    print(json.dumps({"checked": checked, "skipped": skipped, "disagreements": len(bad), **outcomes}))
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
