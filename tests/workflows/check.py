"""Checks of the GitHub workflows that actionlint and the schema do not make.

  python tests/workflows/check.py .github/workflows/*.yml

- every `uses:` is pinned by a full commit SHA and names its release in a comment
  (`owner/repo@<40 hex> # v1.2.3`); local actions (`./...`) are allowed;
- the workflow sets top-level `permissions:` and every job sets its own; nothing asks
  for `write-all`, and only jobs of release.yml may write;
- no `pull_request_target` trigger (it runs with secrets on forked code);
- release.yml: each job that pushes or signs has exactly the write scopes it needs.
Exits 1 with one line per problem.
"""
import re
import sys

import yaml

USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
TAG_COMMENT = re.compile(r"^\s*#\s*v\d+(\.\d+)*\s*$")
ALLOWED_WRITES = {"packages", "id-token", "attestations", "contents"}


def check(path):
    errors = []
    with open(path) as fh:
        text = fh.read()
    for n, line in enumerate(text.splitlines(), 1):
        m = USES.match(line)
        if not m or m.group(1).startswith("./"):
            continue
        ref, rest = m.group(1), m.group(2)
        if not PINNED.match(ref):
            errors.append(f"{path}:{n}: {ref} is not pinned by a full commit SHA")
        if not TAG_COMMENT.match(rest):
            errors.append(f"{path}:{n}: {ref} has no `# vX.Y.Z` comment naming its release")
    wf = yaml.safe_load(text)
    # YAML reads the key `on` as the boolean true.
    triggers = wf.get("on", wf.get(True))
    if isinstance(triggers, dict) and "pull_request_target" in triggers:
        errors.append(f"{path}: pull_request_target runs with secrets on forked code")
    if "permissions" not in wf:
        errors.append(f"{path}: no top-level permissions")
    elif wf["permissions"] not in ({}, {"contents": "read"}):
        errors.append(f"{path}: top-level permissions {wf['permissions']}: want {{}} or contents: read")
    release = path.endswith("release.yml")
    for name, job in wf.get("jobs", {}).items():
        perms = job.get("permissions")
        if perms is None:
            errors.append(f"{path}: job {name} sets no permissions")
            continue
        if perms in ("write-all", "read-all") or not isinstance(perms, dict):
            errors.append(f"{path}: job {name} permissions {perms!r}: list the scopes")
            continue
        writes = {k for k, v in perms.items() if v == "write"}
        if writes and not release:
            errors.append(f"{path}: job {name} writes {sorted(writes)} outside the release workflow")
        if writes - ALLOWED_WRITES:
            errors.append(f"{path}: job {name} writes {sorted(writes - ALLOWED_WRITES)}")
        steps = "\n".join(str(s.get("run", "")) + str(s.get("uses", "")) for s in job.get("steps", []))
        needs = set()
        if "cosign sign" in steps or "cosign attest" in steps or "attest-build-provenance" in steps:
            needs.add("id-token")
        if "build-push-action" in steps or "helm\" push" in steps or "$helm\" push" in steps:
            needs.add("packages")
        if "attest-build-provenance" in steps:
            needs.add("attestations")
        if "gh release" in steps:
            needs.add("contents")
        if release and writes != needs:
            errors.append(f"{path}: job {name} writes {sorted(writes)}, its steps need {sorted(needs)}")
    return errors


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    errors = [e for path in sys.argv[1:] for e in check(path)]
    for e in errors:
        print(f"workflows/check.py: {e}", file=sys.stderr)
    if errors:
        sys.exit(1)
    print(f"workflows/check.py: {len(sys.argv) - 1} workflows: actions pinned by SHA, least-privilege permissions")


if __name__ == "__main__":
    main()
