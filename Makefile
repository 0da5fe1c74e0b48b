# tiergate: `make demo` to see it work, `make test` to prove it. See README.md.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
TG    := $(VENV)/bin/tiergate

.PHONY: setup demo demo-down drill test test-quick lint crd bench clean kind-up kind-down e2e-kind

setup:            ## install Debian packages, the virtualenv and the control plane binaries
	scripts/setup.sh

demo: setup       ## a local control plane, the operator, Prometheus, an SMSC and the example fleet
	scripts/demo.sh

demo-down:        ## stop everything the demo started
	scripts/demo.sh down

drill: setup      ## the 2020 incident replayed: all-at-once deploy vs Argo Rollouts vs tiergate, report in .run/drill/
	scripts/drill.sh

test: setup       ## the whole suite: unit, then integration against real servers
	scripts/test.sh

test-quick:       ## unit tests and fast integration tests only (needs `make setup` once)
	scripts/test.sh -m "not slow"

lint:             ## ruff, mypy (strict) and the import-linter layer contracts
	$(VENV)/bin/ruff check operator tests bench
	$(VENV)/bin/ruff format --check operator tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

kind-up:          ## a one-node kind cluster from images built on this machine; kubeconfig in .run/kind/
	scripts/kind/up.sh

kind-down:        ## delete the kind cluster (images and caches stay)
	scripts/kind/down.sh

e2e-kind: setup   ## kind cluster up, images in, chart installed, tests/e2e against it, cluster down
	scripts/kind/e2e.sh

crd:              ## regenerate crds/sendertier.yaml from the API models
	$(TG) crd > crds/sendertier.yaml

bench:            ## all benchmarks, JSON into bench/results/
	scripts/bench.sh

clean:
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
