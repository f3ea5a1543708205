# ecr-creds-refresher: every entry point a developer or CI needs.
#   make test   everything CI runs (installs what it needs on a fresh machine)
#   make demo   the operator's main job against the in-repo emulators, no cluster needed
#   make bench  speed and memory figures (prints a table, writes bench/latest.json)
#   make soak   the long reliability run

SHELL := /bin/bash
.DEFAULT_GOAL := test
CARGO ?= cargo
VENV := .venv
PY := $(VENV)/bin/python
# Test peers from PyPI: moto (AWS, verifies SigV4 and IAM) and kubernetes-validate.
PY_REQS := tests/moto/requirements.txt tests/manifests/requirements.txt
export MOTO_SERVER := $(CURDIR)/$(VENV)/bin/moto_server

.PHONY: test deps venv debs lint unit manifests demo bench soak release clean

# The venv is rebuilt only when the requirements change.
$(VENV)/.installed: $(PY_REQS)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(foreach r,$(PY_REQS),-r $(r))
	touch $@

venv: $(VENV)/.installed

# kubectl carries the kustomize that renders the manifests (Debian package `kubectl`).
debs:
	@command -v kubectl >/dev/null || { apt-get update -qq && apt-get install -y -qq kubectl; }

deps: venv debs

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --locked

manifests: deps
	tests/manifests/validate.sh

test: deps lint unit manifests

demo:
	$(CARGO) build --locked --bin ecr-creds-refresher
	$(CARGO) run --locked --quiet -p emulators --bin demo -- target/debug/ecr-creds-refresher

release:
	$(CARGO) build --release --locked --bin ecr-creds-refresher

bench: release
	$(CARGO) build --release --locked -p emulators --bin bench
	target/release/bench --operator target/release/ecr-creds-refresher --out bench/latest.json

soak:
	SOAK_CYCLES=$${SOAK_CYCLES:-1000} $(CARGO) test --release --locked --test soak -- --nocapture

clean:
	$(CARGO) clean
	rm -rf $(VENV)
